"""DISFA (Denver Intensity of Spontaneous Facial Action): stereo videos with per-frame AU intensities.

Layout (DISFA ReadMe shipped with the release; Mavadati et al., "DISFA: A Spontaneous Facial Action
Intensity Database", IEEE Trans. Affective Computing 2013):

    Videos_LeftCamera/LeftVideoSN001_comp.avi     (Videos_RightCamera/RightVideoSN001_comp.avi)
    ActionUnit_Labels/SN001/SN001_au1.txt         "frame,intensity" per line, frames from 1, intensity 0-5,
                                                  one file per AU: 1 2 4 5 6 9 12 15 17 20 25 26

Items are frames of the video (frame_index = label frame - 1, the 0-based position the decode stage
seeks with OpenCV), chosen by `sampling` (pipeline/sources/frames.py): `rate` (default, `fps` per second
of the 20 fps video) or `peaks` (the `top_k` frames of highest summed AU intensity, `min_gap_s` apart).
Each carries the 12 AU intensities as corpus labels; an AU whose file is missing, or whose line for that
frame is malformed, is left unannotated (unknown) for the frame. Option `camera`: left (default) | right.
Subject = SN001. No emotion labels, no official split. Rejects: malformed_au_line (file:line),
missing_au_labels (no label folder for the video), unreadable_video, unparsed_name.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from pipeline.domain.record import Reject, SourceItem
from pipeline.sources.au_labels import annotated_aus, read_frame_file
from pipeline.sources.base import Source, SourceError, corpus_root
from pipeline.sources.frames import FrameSampling, video_info

SUBJECT = re.compile(r"(SN\d+)")
AU_FILE = re.compile(r"_au(\d+)$", re.IGNORECASE)


def frame_labels(files: dict[str, Path], source: Source, root: Path
                 ) -> tuple[dict[int, dict[str, float]], list[Reject]]:
    """{AU code: label file} -> ({frame: {AU: intensity}}, rejects for malformed lines)."""
    by_frame: dict[int, dict[str, float]] = {}
    rejects: list[Reject] = []
    for code, path in sorted(files.items()):
        values, problems = read_frame_file(path)
        rel = path.relative_to(root).as_posix()
        rejects += [source.reject(f"{rel}:{p.split(':')[1]}", "malformed_au_line", p) for p in problems]
        for frame, value in values.items():
            by_frame.setdefault(frame, {})[code] = value
    return by_frame, rejects


def labelled_frame_items(source: Source, rel: str, uri: str, subject: str, by_frame: dict[int, dict[str, float]],
                         chosen: list[int], base: int, meta: dict) -> Iterator[SourceItem]:
    """One SourceItem per chosen frame of a video; `base` = the corpus' first frame number."""
    for frame in chosen:
        labels = by_frame[frame]
        yield SourceItem(source.name, rel, uri, subject_id=subject, frame_index=frame - base,
                         meta={**meta, "label_frame": frame}, au_labels=dict(labels), au_annotated=sorted(labels),
                         au_graded=sorted(labels))  # DISFA codes every AU on the 0-5 intensity scale


class DisfaSource(Source):
    kind = "disfa"
    summary = "DISFA: Videos_LeftCamera/*SN###_comp.avi + ActionUnit_Labels/SN###/SN###_auN.txt, 12 AUs 0-5 per frame"

    def items(self) -> Iterator[SourceItem | Reject]:
        root = corpus_root(self)
        camera = str(self.options.get("camera", "left")).capitalize()
        if camera not in ("Left", "Right"):
            raise SourceError(f"source {self.name}: camera must be left or right")
        videos = root / f"Videos_{camera}Camera"
        labels_dir = root / "ActionUnit_Labels"
        if not videos.is_dir() or not labels_dir.is_dir():
            raise SourceError(f"source {self.name}: {videos.name}/ and ActionUnit_Labels/ expected under {root}")
        sampling = FrameSampling.from_options(self.name, self.options)
        known = set(annotated_aus("disfa") or [])
        for video in sorted(p for p in videos.iterdir() if p.is_file()):
            rel = video.relative_to(root).as_posix()
            match = SUBJECT.search(video.stem)
            if match is None:
                yield self.reject(rel, "unparsed_name", "expected <Camera>VideoSN###_comp.avi")
                continue
            subject = match[1]
            files = {}
            for path in sorted((labels_dir / subject).glob("*.txt")):
                au = AU_FILE.search(path.stem)
                if au and f"AU{int(au[1])}" in known:
                    files[f"AU{int(au[1])}"] = path
            if not files:
                yield self.reject(rel, "missing_au_labels", f"no ActionUnit_Labels/{subject}/{subject}_auN.txt")
                continue
            by_frame, rejects = frame_labels(files, self, root)
            yield from rejects
            count, fps = video_info(str(video))
            if count <= 0:
                yield self.reject(rel, "unreadable_video", "no frames could be read")
                continue
            # Labels past the end of the video have no pixels to pair with.
            scores = {f: sum(v.values()) for f, v in by_frame.items() if 1 <= f <= count and v}
            chosen = sampling.select(scores, fps)
            yield from labelled_frame_items(self, rel, str(video), subject, by_frame, chosen, 1,
                                            {"camera": camera.lower()})
