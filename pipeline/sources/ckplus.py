"""CK+ (Extended Cohn-Kanade): posed expression sequences, neutral to peak, with FACS coding of the peak.

Layout (CK+ ReadMe shipped with the release; Lucey et al., "The Extended Cohn-Kanade Dataset (CK+)",
CVPR Workshops 2010):

    cohn-kanade-images/S005/001/S005_001_00000001.png ... S005_001_00000011.png   one sequence, onset..peak
    Emotion/S005/001/S005_001_00000011_emotion.txt   one float, e.g. "   3.0000000e+00": 0 neutral, 1 anger,
                                                    2 contempt, 3 disgust, 4 fear, 5 happy, 6 sadness, 7 surprise
                                                    (only the 327 sequences that met the emotion criteria)
    FACS/S005/001/S005_001_00000011_facs.txt         one line per AU: "AU intensity" as floats; intensity
                                                    0 = unspecified, 1-5 = FACS A-E

One item per sequence: the peak frame (the frame the Emotion/FACS files name, else the last image) with
the FACS coding as corpus AU labels (full FACS: an AU not listed is absent) and the emotion when the
sequence has one; the AUs whose FACS file gives a level (1-5) are `au_graded`. Option `neutral_first_frame`
(default false) adds the first frame as neutral, without AU labels (CK+ codes only the peak; `fea calibrate`
takes such uncoded neutral faces as negatives for every AU). Subject = S005. No official split. Intensity 0
("unspecified") gets the occurrence value of corpus_au.json. Rejects: malformed_facs / malformed_emotion (the file and
line), unknown_label, no_frames.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from pipeline.domain.record import Reject, SourceItem
from pipeline.sources.au_labels import annotated_aus, au_code, intensity, occurrence_intensity
from pipeline.sources.base import Source, SourceError, corpus_root, option_flag
from pipeline.sources.labels import corpus_label_map

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}


class ParseError(ValueError):
    pass


def _code(text: str) -> str:
    """CK+ writes integers as floats ("3.0000000e+00")."""
    value = float(text)
    if not value.is_integer():
        raise ValueError(f"{text!r} is not a whole number")
    return str(int(value))


def read_facs(path: Path) -> tuple[dict[str, float], list[str]]:
    """A FACS file -> ({code: 0-5}, the codes whose level A-E the file grades); intensity 0 = unspecified."""
    labels: dict[str, float] = {}
    graded: list[str] = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        try:
            if len(parts) != 2:
                raise ValueError("expected 'AU intensity'")
            code = au_code(_code(parts[0]))
            level = intensity(parts[1])
        except ValueError as exc:
            raise ParseError(f"{path.name}:{number}: {line.strip()[:80]!r}: {exc}") from None
        labels[code] = level if level > 0 else occurrence_intensity()
        if level > 0:
            graded.append(code)
    return labels, graded


class CkPlusSource(Source):
    kind = "ckplus"
    summary = "CK+: cohn-kanade-images/S###/###/*.png, peak frame with Emotion/*_emotion.txt and FACS/*_facs.txt AUs"

    def items(self) -> Iterator[SourceItem | Reject]:
        root = corpus_root(self)
        images = root / "cohn-kanade-images"
        if not images.is_dir():
            raise SourceError(f"source {self.name}: {images} not found (expected the CK+ release layout)")
        labels = corpus_label_map("ckplus")
        annotated = annotated_aus("ckplus")
        neutral_first = option_flag(self.options, "neutral_first_frame")
        for sequence in sorted(p for p in images.glob("*/*") if p.is_dir()):
            subject, take = sequence.parent.name, sequence.name
            rel_seq = sequence.relative_to(root).as_posix()
            frames = sorted(p for p in sequence.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not frames:
                yield self.reject(rel_seq, "no_frames", f"no images in {rel_seq}")
                continue
            emotion_files = sorted((root / "Emotion" / subject / take).glob("*_emotion.txt"))
            facs_files = sorted((root / "FACS" / subject / take).glob("*_facs.txt"))
            peak = self._peak(frames, emotion_files + facs_files)
            rel = peak.relative_to(root).as_posix()
            meta = {"sequence": f"{subject}/{take}", "frame": "peak"}
            emotion = raw = None
            if emotion_files:
                try:
                    raw = _code(emotion_files[0].read_text().split()[0])
                except (ValueError, IndexError):
                    yield self.reject(rel, "malformed_emotion", f"{emotion_files[0].name}: expected one float code")
                    continue
                if raw not in labels:
                    yield self.reject(rel, "unknown_label", f"CK+ emotion code {raw!r} (expected 0..7)")
                    continue
                emotion = labels[raw]
            au_labels = graded = None
            if facs_files:
                try:
                    au_labels, graded = read_facs(facs_files[0])
                except ParseError as exc:
                    yield self.reject(rel, "malformed_facs", str(exc))
                    continue
            yield SourceItem(self.name, rel, str(peak), emotion=emotion, emotion_raw=raw, subject_id=subject,
                             meta=meta, au_labels=au_labels, au_annotated=annotated, au_graded=graded)
            if neutral_first and len(frames) > 1:
                first = frames[0]
                yield SourceItem(self.name, first.relative_to(root).as_posix(), str(first), emotion="neutral",
                                 emotion_raw="first_frame", subject_id=subject,
                                 meta={"sequence": f"{subject}/{take}", "frame": "first"})

    @staticmethod
    def _peak(frames: list[Path], label_files: list[Path]) -> Path:
        """The frame the label files name (S005_001_00000011_facs.txt -> S005_001_00000011.*), else the last."""
        by_stem = {p.stem: p for p in frames}
        for label in label_files:
            stem = label.stem.rsplit("_", 1)[0]
            if stem in by_stem:
                return by_stem[stem]
        return frames[-1]
