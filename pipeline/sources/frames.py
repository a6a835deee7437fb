"""Which frames of a labelled sequence become items: a fixed rate, or the AU peaks.

For corpora with per-frame AU labels (DISFA, DISFA+, BP4D) consecutive frames are near duplicates; a build
wants either an even sample (`sampling: rate`, `fps` frames per second of the sequence) or the most
expressive moments (`sampling: peaks`: the `top_k` frames of highest summed labelled AU intensity, at least
`min_gap_s` seconds apart, so one long expression does not fill the quota). `max_frames` caps either.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pipeline.sources.base import SourceError

SAMPLING_MODES = ("rate", "peaks")


@dataclass(frozen=True)
class FrameSampling:
    mode: str = "rate"
    fps: float = 1.0
    top_k: int = 10
    min_gap_s: float = 1.0
    max_frames: int = 100_000

    @classmethod
    def from_options(cls, name: str, options: Mapping[str, Any]) -> FrameSampling:
        mode = str(options.get("sampling", "rate"))
        if mode not in SAMPLING_MODES:
            raise SourceError(f"source {name}: sampling must be one of {', '.join(SAMPLING_MODES)}, not {mode!r}")
        sampling = cls(mode, float(options.get("fps", 1.0)), int(options.get("top_k", 10)),
                       float(options.get("min_gap_s", 1.0)), int(options.get("max_frames", 100_000)))
        if sampling.fps <= 0 or sampling.top_k < 1 or sampling.min_gap_s < 0 or sampling.max_frames < 1:
            raise SourceError(f"source {name}: fps > 0, top_k >= 1, min_gap_s >= 0, max_frames >= 1 required")
        return sampling

    def select(self, scores: Mapping[int, float], native_fps: float) -> list[int]:
        """Frame numbers to keep, ascending; `scores` = labelled frame -> summed AU intensity."""
        frames = sorted(scores)
        if not frames:
            return []
        if self.mode == "rate":
            step = max(1, round(native_fps / self.fps)) if native_fps > 0 else 1
            return frames[::step][: self.max_frames]
        gap = self.min_gap_s * native_fps
        chosen: list[int] = []
        # Highest first; ties go to the earlier frame so the choice is deterministic.
        for frame in sorted(frames, key=lambda f: (-scores[f], f)):
            if all(abs(frame - c) >= gap for c in chosen):
                chosen.append(frame)
            if len(chosen) >= min(self.top_k, self.max_frames):
                break
        return sorted(chosen)


def video_info(path: str) -> tuple[int, float]:
    """(frame count, frames per second) of a video as OpenCV (the decode stage's reader) sees it."""
    import cv2

    from pipeline.io.storage import local_file

    with local_file(path) as local:  # OpenCV opens local files only
        capture = cv2.VideoCapture(local)
        try:
            if not capture.isOpened():
                return 0, 0.0
            return int(capture.get(cv2.CAP_PROP_FRAME_COUNT)), float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
        finally:
            capture.release()
