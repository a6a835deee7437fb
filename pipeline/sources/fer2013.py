"""FER2013 (one CSV of 48x48 grey faces), optionally relabelled by FER+ majority vote.

Layout (Kaggle "Challenges in Representation Learning: Facial Expression Recognition Challenge";
Goodfellow et al., "Challenges in Representation Learning: A report on three machine learning
contests", ICONIP 2013): fer2013.csv with columns emotion (0 angry, 1 disgust, 2 fear, 3 happy,
4 sad, 5 surprise, 6 neutral), pixels (2304 space-separated grey values, row-major 48x48) and
Usage (Training / PublicTest / PrivateTest -> train / validation / test).

FER+ (Barsoum et al., "Training Deep Networks for Facial Expression Recognition with Crowd-Sourced
Label Distribution", ICMI 2016; README of microsoft/FERPlus): fer2013new.csv, one row per
fer2013.csv row in the same order, columns Usage, Image name, neutral, happiness, surprise,
sadness, anger, disgust, fear, contempt, unknown, NF (votes of 10 taggers). With the option
`ferplus: <path to fer2013new.csv>` the emotion is the majority vote; ties, a majority for
unknown/NF, and rows FER+ dropped (empty Image name) are rejected as `ambiguous_label`.

Every row becomes an item with inline PNG bytes (`data`); source_item is "fer2013.csv#<row>" (row
0 = first data row). Options: file (default fer2013.csv), ferplus, upscale (integer factor, default
1 = the stored 48x48 pixels, which default params accept: the faces are flagged `low_resolution`, eyes
about 17 px apart; an upscale adds no detail, only pixels, and hides the faces' low resolution from
that flag).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image

from pipeline.domain.record import Reject, SourceItem
from pipeline.sources.base import Source, SourceError, corpus_root
from pipeline.sources.labels import corpus_label_map

USAGE = {"Training": "train", "PublicTest": "validation", "PrivateTest": "test"}
SIDE = 48


def _png(pixels: str, upscale: int) -> bytes | None:
    try:
        values = np.array(pixels.split(), dtype=np.int64)
    except ValueError:
        return None
    if values.size != SIDE * SIDE or values.min() < 0 or values.max() > 255:
        return None
    image = Image.fromarray(values.reshape(SIDE, SIDE).astype(np.uint8), mode="L")
    if upscale > 1:
        image = image.resize((SIDE * upscale, SIDE * upscale), Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@contextmanager
def _rows(path: Path, needed: list[str], source: str) -> Iterator[csv.DictReader]:
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in needed if c not in (reader.fieldnames or [])]
        if missing:
            raise SourceError(f"source {source}: {path.name} lacks column(s) {', '.join(missing)}")
        yield reader


class Fer2013Source(Source):
    kind = "fer2013"
    summary = "FER2013 fer2013.csv (48x48 pixels in a table), optional FER+ majority-vote labels"

    def _ferplus_rows(self, root: Path) -> list[dict[str, str]] | None:
        if not self.options.get("ferplus"):
            return None
        path = root / self.options["ferplus"]
        if not path.is_file():
            raise SourceError(f"source {self.name}: FER+ file {path} not found")
        with _rows(path, ["Usage", "Image name", *corpus_label_map("ferplus")], self.name) as reader:
            return list(reader)

    def items(self) -> Iterator[SourceItem | Reject]:
        root = corpus_root(self)
        path = root / self.options.get("file", "fer2013.csv")
        if not path.is_file():
            raise SourceError(f"source {self.name}: {path} not found")
        ferplus = self._ferplus_rows(root)
        upscale = max(1, int(self.options.get("upscale", 1)))
        labels = corpus_label_map("fer2013")
        with _rows(path, ["emotion", "pixels", "Usage"], self.name) as reader:
            for index, row in enumerate(reader):
                item = f"{path.name}#{index}"
                code = (row["emotion"] or "").strip()
                emotion, raw, meta = labels.get(code), code, {}
                if ferplus is not None:
                    if index >= len(ferplus):
                        raise SourceError(f"source {self.name}: FER+ has {len(ferplus)} rows, {path.name} more")
                    emotion, raw, meta = self._vote(ferplus[index])
                    meta["fer2013_emotion"] = code
                    if emotion is None:
                        yield self.reject(item, "ambiguous_label", f"FER+ votes {meta['ferplus_votes']}")
                        continue
                elif emotion is None:
                    yield self.reject(item, "unknown_label", f"FER2013 emotion {code!r} (expected 0..6)")
                    continue
                data = _png(row["pixels"] or "", upscale)
                if data is None:
                    yield self.reject(item, "bad_pixels", f"expected {SIDE * SIDE} grey values 0..255")
                    continue
                yield SourceItem(self.name, item, str(path), emotion=emotion, emotion_raw=raw,
                                 split=USAGE.get((row["Usage"] or "").strip()), meta=meta, data=data)

    @staticmethod
    def _vote(row: dict[str, str]) -> tuple[str | None, str, dict]:
        """Majority of the FER+ votes: (canonical emotion or None if ambiguous, winning column, meta)."""
        labels = corpus_label_map("ferplus")
        votes = {}
        for column in labels:
            try:
                votes[column] = int(float(row[column] or 0))
            except ValueError:
                votes[column] = 0
        top = max(votes.values())
        winners = [c for c, v in votes.items() if v == top]
        meta = {"ferplus_votes": votes, "ferplus_image": (row["Image name"] or "").strip()}
        if top == 0 or len(winners) > 1 or not meta["ferplus_image"]:
            return None, "/".join(winners), meta
        return labels[winners[0]], winners[0], meta
