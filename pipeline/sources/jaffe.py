"""JAFFE (Japanese Female Facial Expression database): the expression and the subject are in the file name.

Layout (JAFFE README; Lyons, Akamatsu, Kamachi & Gyoba, "Coding Facial Expressions with Gabor
Wavelets", FG 1998): one folder (jaffe/ or jaffedbase/) of 256x256 grey TIFFs named
<subject>.<expression><take>.<image number>.tiff, e.g. KA.AN1.39.tiff: subject KA, anger, first
take, image 39. Expression codes AN DI FE HA NE SA SU. Ten subjects, no official split.
The semantic rating scores (a separate text file of mean ratings per image) are not read.
Every .tif/.tiff under the path is listed (recursively); other files are ignored.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from pipeline.domain.record import Reject, SourceItem
from pipeline.sources.base import Source, corpus_root
from pipeline.sources.labels import corpus_label_map

NAME = re.compile(r"^(?P<subject>[A-Za-z]{2})\.(?P<code>[A-Za-z]{2})(?P<take>\d+)\.(?P<number>\d+)$")


class JaffeSource(Source):
    kind = "jaffe"
    summary = "JAFFE: TIFFs named SUBJECT.EXPRESSIONtake.number.tiff (e.g. KA.AN1.39.tiff)"

    def items(self) -> Iterator[SourceItem | Reject]:
        root = corpus_root(self)
        labels = corpus_label_map("jaffe")
        for path in sorted(p for p in root.rglob("*") if p.suffix.lower() in {".tif", ".tiff"} and p.is_file()):
            rel = path.relative_to(root).as_posix()
            match = NAME.match(path.stem)
            if match is None:
                yield self.reject(rel, "unparsed_name", "expected SUBJECT.CODEtake.number.tiff, e.g. KA.AN1.39.tiff")
                continue
            code = match["code"].upper()
            if code not in labels:
                yield self.reject(rel, "unknown_label", f"JAFFE expression code {code!r}")
                continue
            yield SourceItem(self.name, rel, str(path), emotion=labels[code], emotion_raw=code,
                             subject_id=match["subject"].upper(),
                             meta={"take": int(match["take"]), "image_number": int(match["number"])})
