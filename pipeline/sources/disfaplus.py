"""DISFA+ (Extended DISFA): posed and spontaneous trials as frame images with per-frame AU intensities.

Layout (Mavadati et al., "Extended DISFA Dataset: Investigating Posed and Spontaneous Facial
Expressions", CVPR Workshops 2016; the release's folder structure as described by users of the corpus):

    DISFAPlus/Images/SN001/<Trial>/000.jpg ...     frames of one trial (e.g. A1_AU1_TrailNo_1)
    DISFAPlus/Labels/SN001/<Trial>/AU1.txt ...     one file per AU (the 12 DISFA AUs), one line per frame:
                                                   "<image name or frame number> <intensity 0-5>"

UNSURE: we found no public copy of the DISFA+ ReadMe. The per-line format above ("000.jpg 0" or "0,0",
whitespace or comma separated) is our reading; lines at the top of a file with a single field (a
header such as "AU1" or a count) are skipped as header, every other line that does not parse is a
malformed_au_line reject. Check against your copy before a production build.
Frames: chosen per trial by `sampling` (rate: `fps` of the assumed `native_fps` option, default 20;
or peaks, see pipeline/sources/frames.py). Subject = SN001, meta trial. No emotion labels, no split.
The path may be the folder holding DISFAPlus/ or DISFAPlus/ itself.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from pipeline.domain.record import Reject, SourceItem
from pipeline.sources.au_labels import annotated_aus, au_code, intensity
from pipeline.sources.base import Source, SourceError, corpus_root
from pipeline.sources.frames import FrameSampling

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp"}
FRAME = re.compile(r"(\d+)")


def read_trial_file(path: Path) -> tuple[dict[str, float], list[str]]:
    """AUn.txt -> ({image stem or frame number (as a normalised number string): intensity}, [problems])."""
    values: dict[str, float] = {}
    problems: list[str] = []
    in_header = True
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        parts = line.replace(",", " ").split()
        if not parts:
            continue
        if in_header and len(parts) == 1:
            continue
        in_header = False
        try:
            if len(parts) != 2:
                raise ValueError("expected '<frame> <intensity>'")
            match = FRAME.search(Path(parts[0]).stem)
            if match is None:
                raise ValueError("no frame number")
            values[str(int(match[1]))] = intensity(parts[1])
        except ValueError as exc:
            problems.append(f"{path.name}:{number}: {line.strip()[:80]!r}: {exc}")
    return values, problems


class DisfaPlusSource(Source):
    kind = "disfaplus"
    summary = "DISFA+: Images/SN###/<trial>/*.jpg + Labels/SN###/<trial>/AUn.txt, 12 AUs 0-5 per frame (format unsure)"

    def items(self) -> Iterator[SourceItem | Reject]:
        root = corpus_root(self)
        base = root / "DISFAPlus" if (root / "DISFAPlus").is_dir() else root
        if not (base / "Images").is_dir() or not (base / "Labels").is_dir():
            raise SourceError(f"source {self.name}: Images/ and Labels/ expected under {base}")
        sampling = FrameSampling.from_options(self.name, self.options)
        native_fps = float(self.options.get("native_fps", 20.0))
        known = set(annotated_aus("disfaplus") or [])
        for trial in sorted(p for p in (base / "Labels").glob("*/*") if p.is_dir()):
            subject = trial.parent.name
            images_dir = base / "Images" / subject / trial.name
            images = {}
            for p in sorted(images_dir.glob("*")) if images_dir.is_dir() else []:
                match = FRAME.search(p.stem)
                if p.suffix.lower() in IMAGE_SUFFIXES and match:
                    images[int(match[1])] = p
            rel_trial = trial.relative_to(root).as_posix()
            if not images:
                yield self.reject(rel_trial, "missing_frames", f"no images in {images_dir.relative_to(root)}")
                continue
            by_frame: dict[int, dict[str, float]] = {}
            for path in sorted(trial.glob("*.txt")):
                try:
                    code = au_code(path.stem)
                except ValueError:
                    yield self.reject(f"{rel_trial}/{path.name}", "unparsed_name", "expected AUn.txt")
                    continue
                if code not in known:
                    continue
                values, problems = read_trial_file(path)
                for problem in problems:
                    yield self.reject(f"{rel_trial}/{problem.split(':')[0]}:{problem.split(':')[1]}",
                                      "malformed_au_line", problem)
                for frame, value in values.items():
                    by_frame.setdefault(int(frame), {})[code] = value
            scores = {f: sum(v.values()) for f, v in by_frame.items() if f in images and v}
            for frame in sampling.select(scores, native_fps):
                path = images[frame]
                yield SourceItem(self.name, path.relative_to(root).as_posix(), str(path), subject_id=subject,
                                 meta={"trial": trial.name, "frame": frame}, au_labels=dict(by_frame[frame]),
                                 au_annotated=sorted(by_frame[frame]), au_graded=sorted(by_frame[frame]))
