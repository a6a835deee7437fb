"""A build folder, on a local path or an object-storage URL, and what it holds:

    manifest.json                           the typed `Manifest`; a release's commit marker, written last
    data/<split>-00000-of-00002.parquet     the rows, one shard file per split and writer
    rejects/rejects-00000-of-00001.parquet  every reject with its stage, reason and detail
    README.md                               the dataset card
    validation/result.json, report.html     the validation result
    _work/                                  only while building: the resumable image work (pipeline.shards)

Everything that reads a build goes through `BuildDir`; none of them parses manifest.json or lists
`data/` itself. The shards of a build are those its manifest names (older builds: those in `data/`).
"""

from __future__ import annotations

import re
from functools import cached_property
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import ValidationError

from pipeline.io.manifest import Manifest, ShardFile
from pipeline.io.storage import is_remote, location

SHARD_NAME = re.compile(r"^(?P<split>.+)-(?P<index>\d{5})-of-(?P<total>\d{5})\.parquet$")


class NotABuild(FileNotFoundError):
    """The location holds no manifest.json: not a build, or one that is not (yet) published."""


class ManifestError(ValueError):
    """manifest.json is there but cannot be read as a manifest."""


def shard_split(name: str) -> str:
    """The split a shard file belongs to: `train` for `train-00000-of-00002.parquet`."""
    match = SHARD_NAME.match(name)
    return match["split"] if match else name.removesuffix(".parquet")


class BuildDir:
    MANIFEST = "manifest.json"
    CARD = "README.md"

    def __init__(self, root: str | Path | BuildDir) -> None:
        self.root: Path = root.root if isinstance(root, BuildDir) else location(root)
        if isinstance(root, BuildDir) and "manifest" in root.__dict__:  # the same build: keep what it has read
            self.__dict__["manifest"] = root.manifest

    def __str__(self) -> str:
        return str(self.root)

    def __repr__(self) -> str:
        return f"BuildDir({str(self.root)!r})"

    @property
    def name(self) -> str:
        return self.root.name

    @property
    def remote(self) -> bool:
        return is_remote(self.root)

    @property
    def manifest_path(self) -> Path:
        return self.root / self.MANIFEST

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def rejects_dir(self) -> Path:
        return self.root / "rejects"

    @property
    def card_path(self) -> Path:
        return self.root / self.CARD

    @property
    def validation_dir(self) -> Path:
        return self.root / "validation"

    @property
    def work_dir(self) -> Path:
        return self.root / "_work"

    # ------------------------------------------------------------------------------------------ manifest

    def has_manifest(self) -> bool:
        return self.manifest_path.is_file()

    @cached_property
    def manifest(self) -> Manifest:
        """The manifest; NotABuild without one, ManifestError when it is not a manifest."""
        try:
            text = self.manifest_path.read_text()
        except FileNotFoundError:
            raise NotABuild(f"{self.root} is not a build: no {self.MANIFEST} (run `fea build` first; a build "
                            "being published has none until it is complete)") from None
        try:
            return Manifest.model_validate_json(text)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "top level"
            raise ManifestError(f"{self.manifest_path}: not a build manifest ({where}: {first['msg']})") from None

    def manifest_bytes(self) -> bytes:
        return self.manifest_path.read_bytes()

    def write_manifest(self, manifest: Manifest) -> Path:
        self.manifest_path.write_text(manifest.to_json())
        self.__dict__["manifest"] = manifest
        return self.manifest_path

    # ------------------------------------------------------------------------------------------ files

    def _named(self, listed: list[ShardFile] | None, folder: Path) -> list[Path]:
        if listed is not None:
            return [self.root / f.path for f in listed]
        return sorted(folder.glob("*.parquet"), key=lambda p: p.name)

    def _manifest_or_none(self) -> Manifest | None:
        try:
            return self.manifest
        except (NotABuild, ManifestError):
            return None

    def shards(self, split: str | None = None) -> list[Path]:
        """The data files (of one split), in name order."""
        manifest = self._manifest_or_none()
        files = self._named(manifest.shards if manifest else None, self.data_dir)
        return [f for f in files if split is None or shard_split(f.name) == split]

    def splits(self) -> list[str]:
        return sorted({shard_split(f.name) for f in self.shards()})

    def reject_files(self) -> list[Path]:
        manifest = self._manifest_or_none()
        return self._named(manifest.reject_files if manifest else None, self.rejects_dir)

    def list_files(self) -> tuple[list[ShardFile], list[ShardFile]]:
        """The data and reject files as they are in the folder, with their row counts (for the manifest)."""
        def listed(folder: Path) -> list[ShardFile]:
            return [ShardFile(path=f"{folder.name}/{f.name}", rows=self.parquet(f).metadata.num_rows)
                    for f in sorted(folder.glob("*.parquet"), key=lambda p: p.name)]

        return listed(self.data_dir), listed(self.rejects_dir)

    # ------------------------------------------------------------------------------------------ reading

    @staticmethod
    def parquet(path: Path) -> pq.ParquetFile:
        """A shard opened for reading (a local file directly, an object through its filesystem)."""
        return pq.ParquetFile(path.open("rb")) if is_remote(path) else pq.ParquetFile(path)

    def read_table(self, files: list[Path], columns: list[str]) -> pa.Table | None:
        tables = [self.parquet(f).read(columns=columns) for f in files]
        return pa.concat_tables(tables) if tables else None

    def read_rows(self, columns: list[str], split: str | None = None) -> pa.Table | None:
        """These columns of every row (of one split); None when the build has no rows."""
        return self.read_table(self.shards(split), columns)

    def read_rejects(self, columns: list[str]) -> pa.Table | None:
        return self.read_table(self.reject_files(), columns)
