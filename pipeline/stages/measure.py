"""Measure: FACS appearance measures of the face mesh (`au.measures`), for every AU backend.

They go to the record (`face_measures`), so AU heads can be learned from a build (`fea calibrate`),
and feed the AU head. Rejects: degenerate_mesh (no usable geometry, e.g. both eye centres in one point).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from pipeline.au.measures import MeshMeasures
from pipeline.domain.record import Sample
from pipeline.stages.base import Stage


class MeasureStage(Stage):
    name = "measure"
    reasons = ("degenerate_mesh",)
    reads = frozenset({"mesh"})
    writes = frozenset({"face_measures"})

    def __init__(self, measures: MeshMeasures) -> None:
        super().__init__()
        self.measures = measures

    def run(self, sample: Sample) -> Iterator:
        try:
            values = self.measures.compute(sample.mesh)
        except ValueError as exc:
            yield self.reject(sample, "degenerate_mesh", str(exc))
            return
        if not np.isfinite(values).all():
            yield self.reject(sample, "degenerate_mesh", "a face measure is not finite")
            return
        sample.face_measures = values
        yield sample
