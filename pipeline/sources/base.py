"""What a source adapter is: something that lists a corpus as SourceItems, or Rejects for entries it cannot use."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

from pipeline.record import Reject, SourceItem

READ_STAGE = "read"
VIDEO_SUFFIXES = {".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v"}


class SourceError(ValueError):
    """The corpus or its options are unusable as a whole (missing manifest, missing column)."""


class Source:
    """Base adapter. Subclasses set `kind`, `summary`, and implement `items()`."""

    kind: ClassVar[str] = ""
    summary: ClassVar[str] = ""

    def __init__(self, name: str, path: Path | None, options: dict[str, Any]) -> None:
        self.name = name
        self.path = path
        self.options = dict(options)

    def items(self) -> Iterator[SourceItem | Reject]:
        raise NotImplementedError

    def reject(self, source_item: str, reason: str, detail: str = "") -> Reject:
        return Reject(self.name, source_item, READ_STAGE, reason, detail)

    def inside_root(self, root: Path, candidate: Path) -> bool:
        """Paths from a manifest must stay inside the corpus root."""
        try:
            candidate.resolve().relative_to(root.resolve())
        except ValueError:
            return False
        return True


def video_frame_items(
    source: Source, root: Path, path: Path, fps: float, max_frames: int, **labels: Any
) -> Iterator[SourceItem | Reject]:
    """One SourceItem per sampled frame of a video (at `fps`), or a Reject if it cannot be opened."""
    import cv2

    rel = path.relative_to(root).as_posix()
    capture = cv2.VideoCapture(str(path))
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
