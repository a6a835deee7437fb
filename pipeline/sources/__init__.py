"""Source adapters and their registry: `kind` in params.yaml -> adapter class.

Adapters come from three places, so a researcher can add a corpus without touching the core:
the built-ins below, installed packages that declare an entry point in the group `fea.sources`
(`my_corpus = my_package.adapters:MyCorpusSource`), and `kind: "my_module:MyCorpusSource"`
written directly in params.yaml (the module must be importable).
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from pathlib import Path

from pipeline.config import SourceConfig
from pipeline.io.storage import list_once
from pipeline.sources.affectnet import AffectNetSource
from pipeline.sources.base import Source, SourceError
from pipeline.sources.bp4d import Bp4dSource
from pipeline.sources.ckplus import CkPlusSource
from pipeline.sources.demo import DemoSource
from pipeline.sources.disfa import DisfaSource
from pipeline.sources.disfaplus import DisfaPlusSource
from pipeline.sources.expw import ExpwSource
from pipeline.sources.fer2013 import Fer2013Source
from pipeline.sources.folder_csv import CsvSource
from pipeline.sources.hf import HuggingFaceSource
from pipeline.sources.jaffe import JaffeSource
from pipeline.sources.jsonl import JsonlSource
from pipeline.sources.rafau import RafAuSource
from pipeline.sources.rafdb import RafDbSource

BUILTIN: dict[str, type[Source]] = {
    cls.kind: cls
    for cls in (DemoSource, CsvSource, JsonlSource, HuggingFaceSource, RafDbSource, AffectNetSource, Fer2013Source,
                JaffeSource, ExpwSource, CkPlusSource, DisfaSource, DisfaPlusSource, Bp4dSource, RafAuSource)
}
ENTRY_POINT_GROUP = "fea.sources"


def registry() -> dict[str, type[Source]]:
    """Built-in adapters plus those that installed packages register under `fea.sources`."""
    found = dict(BUILTIN)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name not in found:
            found[ep.name] = ep.load()
    return found


def _import_adapter(spec: str) -> type[Source]:
    module_name, _, class_name = spec.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        raise SourceError(f"cannot load source adapter {spec!r}: {exc}") from None
    if not (isinstance(cls, type) and issubclass(cls, Source)):
        raise SourceError(f"{spec!r} is not a subclass of pipeline.sources.Source")
    return cls


def adapter_class(kind: str) -> type[Source]:
    if ":" in kind:
        return _import_adapter(kind)
    known = registry()
    if kind not in known:
        raise SourceError(f"unknown kind {kind!r}; known: {', '.join(sorted(known))} (or module:Class)")
    return known[kind]


def make_source(source: SourceConfig, path: Path | None) -> Source:
    """The adapter of one source over its folder (`Config.paths.sources`: a local Path, or a UPath for a URL)."""
    try:
        cls = adapter_class(source.kind)
    except SourceError as exc:
        raise SourceError(f"source {source.name}: {exc}") from None
    if path is not None and not path.is_dir():
        raise SourceError(f"source {source.name}: folder {path} not found")
    if path is not None:
        list_once(path)  # on object storage: one listing answers the adapter's per-file checks
    return cls(source.name, path, source.options)


__all__ = ["BUILTIN", "Source", "SourceError", "adapter_class", "make_source", "registry"]
