"""Blendshapes in torch, batched: the AU backend `torch-blendshapes` (GPU when present, else CPU).

A RunInference-style stage: the network is loaded once per worker in `setup`, elements arrive in
batches (`beam.BatchElements`, sizes from params), and a batch that fails becomes one
`internal_error` reject per sample (a dead-letter output) instead of failing the run. It replaces
the Face Landmarker's blendshape scores with the torch network's, computed from the same mesh.
"""

from __future__ import annotations

from collections.abc import Iterator

import apache_beam as beam
import numpy as np
from apache_beam.metrics import Metrics

from pipeline.record import Reject, Sample
from pipeline.stages.base import REJECTS

STAGE = "blendshapes"


class TorchBlendshapesStage(beam.DoFn):
    def __init__(self, device: str | None, model_path: str | None) -> None:
        self.device = device
        self.model_path = model_path
        self.model = None

    def setup(self) -> None:
        import torch

        from pipeline.models.blendshapes_torch import TorchBlendshapes

        self.model = TorchBlendshapes(device=self.device, model_path=self.model_path)
        if self.model.device.type == "cpu":
            torch.set_num_threads(1)  # Beam already runs one worker per core; more threads oversubscribe
        self.batches = Metrics.distribution(STAGE, "batch_size")
        self.failed = Metrics.counter(STAGE, "reject.internal_error")

    def process(self, batch: list[Sample]) -> Iterator:
        self.batches.update(len(batch))
        try:
            scores = self.model.predict(np.stack([s.mesh for s in batch]))
        except Exception as exc:  # noqa: BLE001 - a failed batch is a reject per sample, never a failed run
            self.failed.inc(len(batch))
            for sample in batch:
                yield beam.pvalue.TaggedOutput(REJECTS, Reject.of(
                    sample.item, STAGE, "internal_error", f"{type(exc).__name__}: {exc}", sample.image_sha256))
            return
        for sample, row in zip(batch, scores, strict=True):
            sample.blendshapes = row
            yield sample
