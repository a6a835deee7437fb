"""BP4D-Spontaneous: 2D frame sequences per subject and task with per-frame AU occurrence (and some intensity).

Layout (BP4D release documentation; Zhang et al., "BP4D-Spontaneous: a high-resolution spontaneous 3D
dynamic facial expression database", Image and Vision Computing 2014; AU files as distributed for the
FERA 2015 challenge, Valstar et al. 2015):

    Sequences/F001/T1/0001.jpg ...       the 2D frames of subject F001, task T1 (25 fps); number = frame
    AUCoding/AU_OCC/F001_T1.csv          header: frame column, then one column per AU number ("1,2,4,...");
                                         one row per coded frame; 1 = present, 0 = absent, 9 = not coded
    AUCoding/AU_INT/AU06/F001_T1_AU06.csv   "frame,intensity" 0-5 (9 = not coded), for AU6 10 12 14 17

The path may be the BP4D root or hold a BP4D/ folder. 12 AUs are coded (corpus_au.json):
1 2 4 6 7 10 12 14 15 17 23 24; other columns are ignored, a 9 leaves the AU unknown for that frame.
An occurrence without intensity gets the occurrence value of corpus_au.json; an AU_INT value
replaces it. AU23 has no vocabulary column: it stays on the SourceItem, out of the record.
Frames: one item per frame image that has an AU_OCC row, chosen by `sampling` (rate, default 1 per
second of 25 fps; or peaks, see pipeline/sources/frames.py). Subject = F001, meta task = T1. No emotion
labels, no official split. Rejects: malformed_au_line (file:line), missing_au_labels, unparsed_name.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from pathlib import Path

from pipeline.domain.record import Reject, SourceItem
from pipeline.sources.au_labels import annotated_aus, au_code, occurrence_intensity, read_frame_file
from pipeline.sources.base import Source, SourceError, corpus_root
from pipeline.sources.frames import FrameSampling

NATIVE_FPS = 25.0
NOT_CODED = 9.0
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp"}
SEQUENCE = re.compile(r"^(?P<subject>[FM]\d+)_(?P<task>T\d+)$")


class Bp4dSource(Source):
    kind = "bp4d"
    summary = "BP4D: Sequences/F###/T#/*.jpg + AUCoding/AU_OCC/F###_T#.csv (12 AUs, 9 = not coded) and AU_INT"

    def items(self) -> Iterator[SourceItem | Reject]:
        root = corpus_root(self)
        base = root / "BP4D" if (root / "BP4D" / "AUCoding").is_dir() else root
        occ_dir = base / "AUCoding" / "AU_OCC"
        if not occ_dir.is_dir() or not (base / "Sequences").is_dir():
            raise SourceError(f"source {self.name}: Sequences/ and AUCoding/AU_OCC/ expected under {base}")
        sampling = FrameSampling.from_options(self.name, self.options)
        coded = set(annotated_aus("bp4d") or [])
        for occ in sorted(occ_dir.glob("*.csv")):
            rel_occ = occ.relative_to(root).as_posix()
            match = SEQUENCE.match(occ.stem)
            if match is None:
                yield self.reject(rel_occ, "unparsed_name", "expected AU_OCC/F###_T#.csv")
                continue
            subject, task = match["subject"], match["task"]
            frames_dir = base / "Sequences" / subject / task
            images = {int(p.stem): p for p in frames_dir.glob("*") if p.suffix.lower() in IMAGE_SUFFIXES
                      and p.stem.isdigit()} if frames_dir.is_dir() else {}
            if not images:
                yield self.reject(rel_occ, "missing_frames", f"no frame images in {frames_dir.relative_to(root)}")
                continue
            by_frame, problems = self._occurrence(occ, coded)
            graded: dict[int, list[str]] = {}  # per frame, the AUs AU_INT grades (the others: occurrence only)
            for code, path in self._intensity_files(base, occ.stem):
                values, more = read_frame_file(path, frozenset({NOT_CODED}))
                problems += more
                for frame, value in values.items():
                    if frame in by_frame and code in by_frame[frame]:
                        by_frame[frame][code] = value
                        graded.setdefault(frame, []).append(code)
            for problem in problems:
                file_name, line = problem.split(":")[:2]
                yield self.reject(f"{file_name}:{line}", "malformed_au_line", problem)
            scores = {f: sum(v.values()) for f, v in by_frame.items() if f in images and v}
            for frame in sampling.select(scores, NATIVE_FPS):
                path = images[frame]
                labels = by_frame[frame]
                yield SourceItem(self.name, path.relative_to(root).as_posix(), str(path), subject_id=subject,
                                 meta={"task": task, "frame": frame}, au_labels=dict(labels),
                                 au_annotated=sorted(labels), au_graded=sorted(graded.get(frame, [])))

    @staticmethod
    def _occurrence(path: Path, coded: set[str]) -> tuple[dict[int, dict[str, float]], list[str]]:
        with path.open(newline="") as fh:
            rows = list(csv.reader(fh))
        if not rows:
            return {}, [f"{path.name}:1: empty file"]
        columns: list[tuple[int, str]] = []
        for i, cell in enumerate(rows[0][1:], start=1):
            try:
                code = au_code(cell)
            except ValueError:
                continue  # a trailing non-AU column (BP4D files differ); AU columns are numbers
            if code in coded:
                columns.append((i, code))
        by_frame: dict[int, dict[str, float]] = {}
        problems: list[str] = []
        for number, row in enumerate(rows[1:], start=2):
            if not row:
                continue
            try:
                frame = int(row[0])
                labels = {}
                for i, code in columns:
                    value = float(row[i])
                    if value == NOT_CODED:
                        continue
                    if value not in (0.0, 1.0):
                        raise ValueError(f"{code} = {row[i]!r}, expected 0, 1 or 9")
                    labels[code] = occurrence_intensity() if value == 1.0 else 0.0
            except (ValueError, IndexError) as exc:
                problems.append(f"{path.name}:{number}: {','.join(row)[:80]!r}: {exc}")
                continue
            by_frame[frame] = labels
        return by_frame, problems

    @staticmethod
    def _intensity_files(base: Path, sequence: str) -> Iterator[tuple[str, Path]]:
        for path in sorted((base / "AUCoding" / "AU_INT").glob(f"*/{sequence}_AU*.csv")):
            try:
                yield au_code(path.stem.rsplit("_", 1)[1]), path
            except ValueError:
                continue
