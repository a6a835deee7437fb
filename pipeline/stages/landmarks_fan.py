"""Landmark backend `face-alignment`: FAN's 68 points in the Face Landmarker's face box, batched.

Runs between detect and align when `detect.landmarks: face-alignment`; align then uses the five points
derived from these 68 (eye centres, nose tip, mouth corners) instead of the MediaPipe mesh. A batched
stage: the model is loaded once per worker (`setup`); a failed batch becomes one `internal_error` reject
per sample.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from pipeline.domain.record import Sample
from pipeline.stages.base import ModelStage

if TYPE_CHECKING:
    from pipeline.models.fan import FanLandmarks


def mesh_box(mesh: np.ndarray) -> list[float]:
    x0, y0 = mesh[:, :2].min(axis=0)
    x1, y1 = mesh[:, :2].max(axis=0)
    return [float(x0), float(y0), float(x1), float(y1)]


class FanLandmarksStage(ModelStage):
    name = "landmarks"
    reads = frozenset({"pixels", "mesh"})
    writes = frozenset({"landmarks_68"})

    def __init__(self, weights: str | None, device: str | None) -> None:
        super().__init__()
        self.weights = weights
        self.device = device

    def load_model(self) -> FanLandmarks:  # imported here: torch loads in the worker only
        from pipeline.models.fan import FanLandmarks

        return FanLandmarks(self.weights, self.device)

    def run_batch(self, batch: list[Sample]) -> list[list[Sample]]:
        points, _ = self.model.predict([s.pixels for s in batch], np.array([mesh_box(s.mesh) for s in batch]))
        for sample, row in zip(batch, points, strict=True):
            sample.landmarks_68 = row
        return [[sample] for sample in batch]
