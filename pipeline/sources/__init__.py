"""Source adapters and their registry: `kind` in params.yaml -> adapter class."""

from __future__ import annotations

from pipeline.config import Config, SourceConfig
from pipeline.sources.base import Source, SourceError
from pipeline.sources.demo import DemoSource
from pipeline.sources.folder_csv import CsvSource

REGISTRY: dict[str, type[Source]] = {cls.kind: cls for cls in (DemoSource, CsvSource)}


def make_source(source: SourceConfig, config: Config) -> Source:
    try:
        cls = REGISTRY[source.kind]
    except KeyError:
        raise SourceError(
            f"source {source.name}: unknown kind {source.kind!r}; known: {', '.join(sorted(REGISTRY))}"
        ) from None
    path = config.resolve(source.path) if source.path else None
    if path is not None and not path.is_dir():
        raise SourceError(f"source {source.name}: folder {path} not found")
    return cls(source.name, path, source.options)


__all__ = ["REGISTRY", "Source", "SourceError", "make_source"]
