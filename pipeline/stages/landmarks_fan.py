"""Landmark backend `face-alignment`: FAN's 68 points in the Face Landmarker's face box, batched.

Runs between detect and align when `detect.landmarks: face-alignment`; align then uses the five points
derived from these 68 (eye centres, nose tip, mouth corners) instead of the MediaPipe mesh. The model
is loaded once per worker (`setup`); a failed batch becomes one `internal_error` reject per sample.
"""

from __future__ import annotations

from collections.abc import Iterator

import apache_beam as beam
import numpy as np
from apache_beam.metrics import Metrics

from pipeline.record import Reject, Sample
from pipeline.stages.base import REJECTS, describe

STAGE = "landmarks"


def mesh_box(mesh: np.ndarray) -> list[float]:
    x0, y0 = mesh[:, :2].min(axis=0)
    x1, y1 = mesh[:, :2].max(axis=0)
    return [float(x0), float(y0), float(x1), float(y1)]


class FanLandmarksStage(beam.DoFn):
    def __init__(self, weights: str | None, device: str | None) -> None:
        self.weights = weights
        self.device = device
        self.model = None

    def setup(self) -> None:
        import torch

        from pipeline.models.fan import FanLandmarks

        self.model = FanLandmarks(self.weights, self.device)
        if self.model.device.type == "cpu":
            torch.set_num_threads(1)  # Beam runs one worker per core; more threads oversubscribe
        self.batches = Metrics.distribution(STAGE, "batch_size")
        self.counters = {what: Metrics.counter(STAGE, what) for what in ("in", "out", "reject.internal_error")}

    def process(self, batch: list[Sample]) -> Iterator:
        self.batches.update(len(batch))
        self.counters["in"].inc(len(batch))
        try:
            points, _ = self.model.predict([s.pixels for s in batch], np.array([mesh_box(s.mesh) for s in batch]))
        except Exception as exc:  # noqa: BLE001 - a failed batch is a reject per sample, never a failed run
            self.counters["reject.internal_error"].inc(len(batch))
            for sample in batch:
                yield beam.pvalue.TaggedOutput(REJECTS, Reject.of(
                    sample.item, STAGE, "internal_error", describe(exc), sample.image_sha256))
            return
        for sample, row in zip(batch, points, strict=True):
            sample.landmarks_68 = row
            self.counters["out"].inc()
            yield sample
