"""What a source adapter is: something that lists a corpus as SourceItems, or Rejects for entries it cannot use."""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar

from pipeline.domain.record import Reject, SourceItem
from pipeline.io.storage import is_remote, local_file

READ_STAGE = "read"
VIDEO_SUFFIXES = {".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v"}


class SourceError(ValueError):
    """The corpus or its options are unusable as a whole (missing manifest, missing column)."""


# Hugging Face `datasets` split names (datasets.naming._split_re). A build writes data/<split>-*.parquet,
# so an official split read from a corpus must never be a path ("../../x", "a/b").
SPLIT_NAME = re.compile(r"\w+(\.\w+)*")


def valid_split_name(split: str) -> bool:
    return bool(SPLIT_NAME.fullmatch(split))


class Source:
    """Base adapter. Subclasses set `kind`, `summary`, and implement `items()`.

    The pipeline reads an adapter through `checked_items()`, which applies the checks every corpus
    needs whatever its adapter does: an official `split` that is not a valid split name (it becomes
    a file name) is turned into a `read/invalid_split` reject.
    """

    kind: ClassVar[str] = ""
    summary: ClassVar[str] = ""

    def __init__(self, name: str, path: Path | None, options: dict[str, Any]) -> None:
        self.name = name
        self.path = path
        self.options = dict(options)

    def items(self) -> Iterator[SourceItem | Reject]:
        raise NotImplementedError

    def checked_items(self) -> Iterator[SourceItem | Reject]:
        for entry in self.items():
            if isinstance(entry, SourceItem) and entry.split is not None and not valid_split_name(entry.split):
                yield Reject(entry.source, entry.source_item, READ_STAGE, "invalid_split",
                             f"split {entry.split!r} is not a valid split name", frame_index=entry.frame_index)
            else:
                yield entry

    def reject(self, source_item: str, reason: str, detail: str = "") -> Reject:
        return Reject(self.name, source_item, READ_STAGE, reason, detail)

    def inside_root(self, root: Path, candidate: Path) -> bool:
        """Paths from a manifest must stay inside the corpus root (symbolic links followed; on object storage,
        which has no links, `..` resolved)."""
        if is_remote(root):
            try:
                candidate.resolve().relative_to(root.resolve())
            except ValueError:
                return False
            return True
        try:
            resolved(candidate).relative_to(_resolved_dir(root))
        except ValueError:
            return False
        return True


@lru_cache(maxsize=4096)
def _resolved_dir(folder: Path) -> Path:
    return folder.resolve()


def resolved(path: Path) -> Path:
    """`path.resolve()`, resolving each folder once: corpora list thousands of files per folder, and a full
    resolve costs one system call per path component."""
    try:
        direct = ".." not in path.parts and not path.is_symlink()
    except OSError:  # a name the file system refuses (too long...): resolve() copes, the reader reports it
        direct = False
    return _resolved_dir(path.parent) / path.name if direct else path.resolve()


def video_frame_items(
    source: Source, root: Path, path: Path, fps: float, max_frames: int, **labels: Any
) -> Iterator[SourceItem | Reject]:
    """One SourceItem per sampled frame of a video (at `fps`), or a Reject if it cannot be opened."""
    import cv2

    rel = path.relative_to(root).as_posix()
    with local_file(str(path)) as local:  # OpenCV opens local files only
        capture = cv2.VideoCapture(local)
        try:
            frames = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) if capture.isOpened() else 0
            native_fps = capture.get(cv2.CAP_PROP_FPS) or 0.0
        finally:
            capture.release()
    if frames <= 0:
        yield source.reject(rel, "unreadable_video", "no frames could be read")
        return
    step = max(1, round(native_fps / fps)) if native_fps > 0 and fps > 0 else 1
    for index in list(range(0, frames, step))[:max_frames]:
        yield SourceItem(source.name, rel, str(path), frame_index=index, **labels)


def option_flag(options: dict[str, Any], key: str, default: bool = False) -> bool:
    """A yes/no option from params.yaml (a bool) or from `--source kind:path,key=value` (a string)."""
    value = options.get(key, default)
    return value.strip().lower() in ("1", "true", "yes", "on") if isinstance(value, str) else bool(value)


def corpus_root(source: Source) -> Path:
    if source.path is None:
        raise SourceError(f"source {source.name}: {source.kind} needs a path (the corpus' release folder)")
    return source.path


def official_split(name: str) -> str | None:
    lowered = name.lower()
    for prefix, split in (("train", "train"), ("test", "test"), ("val", "validation"), ("dev", "validation")):
        if lowered.startswith(prefix):
            return split
    return None
