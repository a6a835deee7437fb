"""RAF-AU: in-the-wild faces (from RAF-ML) with FACS AU occurrence coded by certified coders.

Layout (Yan, Li, Que, Pei & Deng, "RAF-AU Database: In-the-Wild Facial Expressions with Subjective
Emotion Judgement and Objective AU Annotations", arXiv:2008.05196, 2020; download page of the RAF family,
whdeng.cn/RAF, which for the sibling RAF-CE release documents the AU label file: "AU labels of each
image. L, R, B, T represent Left only, Right only, Bottom only and Top only"):

    RAFAU_label.txt        "0001.jpg 1+2+L12+25" per line: the image and its AUs joined by "+";
                           "null" (or nothing) = no AU
    aligned/0001_aligned.jpg  or  original/0001.jpg   the images

UNSURE: the field separator and an intensity suffix are read leniently: whitespace separates image and
AUs, a trailing intensity letter A-E on a code ("12C") becomes 1-5; without one the AU gets the
occurrence value of corpus_au.json. The laterality prefix is dropped (the record codes the face).
The coding is full FACS: an AU not listed is absent. Codes outside the AU vocabulary stay on the
SourceItem. RAF-AU is a separate release from RAF-DB basic (other images), so the rafdb adapter does
not read it. No subjects, no official split. Options: aligned (default false).
Rejects: malformed_line, unknown_au (a token that is no AU code), file_not_found.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from pipeline.domain.record import Reject, SourceItem
from pipeline.sources.au_labels import annotated_aus, au_code, occurrence_intensity
from pipeline.sources.base import Source, SourceError, corpus_root, option_flag

LEVELS = {letter: float(i) for i, letter in enumerate("ABCDE", start=1)}
TOKEN = re.compile(r"^(?P<code>[LRBT]?(?:AU)?\d+)(?P<level>[A-E])?$", re.IGNORECASE)
NONE_TOKENS = {"null", "none", "0", "-"}


def parse_aus(field: str) -> dict[str, float]:
    labels: dict[str, float] = {}
    for token in (t for t in field.split("+") if t):
        if token.lower() in NONE_TOKENS:
            continue
        match = TOKEN.match(token)
        if match is None:
            raise ValueError(f"not an AU code: {token!r}")
        code = au_code(match["code"])
        level = LEVELS[match["level"].upper()] if match["level"] else occurrence_intensity()
        labels[code] = max(level, labels.get(code, 0.0))  # L12+R12: the stronger side
    return labels


class RafAuSource(Source):
    kind = "rafau"
    summary = "RAF-AU: RAFAU_label.txt ('0001.jpg 1+2+L12') + original/ (or aligned/) images, full FACS occurrence"

    def items(self) -> Iterator[SourceItem | Reject]:
        root = corpus_root(self)
        label_file = next(iter(sorted(root.glob("**/RAFAU_label.txt"))), None)
        if label_file is None:
            raise SourceError(f"source {self.name}: RAFAU_label.txt not found under {root}")
        aligned = option_flag(self.options, "aligned")
        image_dir = label_file.parent / ("aligned" if aligned else "original")
        annotated = annotated_aus("rafau")
        for number, line in enumerate(label_file.read_text().splitlines(), start=1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) > 2:
                yield self.reject(f"{label_file.name}:{number}", "malformed_line", line[:200])
                continue
            name = parts[0]
            path = image_dir / (f"{Path(name).stem}_aligned{Path(name).suffix}" if aligned else name)
            rel = path.relative_to(root).as_posix() if self.inside_root(root, path) else name
            if not self.inside_root(root, path):
                yield self.reject(name, "path_outside_root", f"{name} resolves outside {root}")
                continue
            try:
                labels = parse_aus(parts[1] if len(parts) == 2 else "")
            except ValueError as exc:
                yield self.reject(rel, "unknown_au", f"{label_file.name}:{number}: {exc}")
                continue
            if not path.is_file():
                yield self.reject(rel, "file_not_found", str(path))
                continue
            yield SourceItem(self.name, rel, str(path), au_labels=labels, au_annotated=annotated)
