"""Dedup: one copy of each face across all sources; the others become `near_duplicate` rejects.

Faces are grouped by a 64-bit difference hash of the aligned crop (computed in the align stage):
the same photo re-encoded, resized or re-compressed in another corpus lands in the same group.
Within a group the face of the earliest source in params (then the smallest item id) is kept;
each other face is rejected with `duplicate_of` = the kept face's id. Mirrored or re-cropped
copies hash differently and are not caught, and an exposure change can flip a bit (a banded,
Hamming-distance match would catch those; not done yet).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import apache_beam as beam
import cv2
import numpy as np
from apache_beam.metrics import Metrics

from pipeline.record import Reject, Sample
from pipeline.stages.base import REJECTS

STAGE = "dedup"


def crop_hash(rgb: np.ndarray) -> int:
    """Difference hash: 9x8 grey thumbnail, one bit per horizontally adjacent pair."""
    grey = cv2.resize(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), (9, 8), interpolation=cv2.INTER_AREA)
    bits = (grey[:, 1:] > grey[:, :-1]).flatten()
    return int(np.packbits(bits).view(">u8")[0])


class DedupStage(beam.DoFn):
    def __init__(self, source_order: list[str]) -> None:
        self.rank = {name: i for i, name in enumerate(source_order)}

    def setup(self) -> None:
        self.kept = Metrics.counter(STAGE, "out")
        self.dropped = Metrics.counter(STAGE, "reject.near_duplicate")

    def process(self, group: tuple[int, Iterable[Sample]]) -> Iterator:
        _, samples = group
        ordered = sorted(samples, key=lambda s: (self.rank.get(s.item.source, len(self.rank)), s.item.source,
                                                 s.item.source_item, s.item.frame_index or -1, s.face_index))
        keep = ordered[0]
        self.kept.inc()
        yield keep
        for other in ordered[1:]:
            self.dropped.inc()
            reject = Reject.of(other.item, STAGE, "near_duplicate",
                               f"same crop hash as {keep.item.source}:{keep.item.source_item}", other.image_sha256)
            reject.duplicate_of = keep.face_id
            yield beam.pvalue.TaggedOutput(REJECTS, reject)
