"""Blendshapes in torch, batched: the AU backend `torch-blendshapes` (GPU when present, else CPU).

A batched stage (`BatchStage`, RunInference-style): the network is loaded once per worker in `setup`,
elements arrive in batches, and a batch that fails becomes one `internal_error` reject per sample (a
dead-letter output) instead of failing the run. It replaces the Face Landmarker's blendshape scores with
the torch network's, computed from the same mesh.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from pipeline.domain.record import Sample
from pipeline.stages.base import ModelStage

if TYPE_CHECKING:
    from pipeline.models.blendshapes_torch import TorchBlendshapes


class TorchBlendshapesStage(ModelStage):
    name = "blendshapes"
    reads = frozenset({"mesh"})
    writes = frozenset({"blendshapes"})

    def __init__(self, device: str | None, model_path: str | None) -> None:
        super().__init__()
        self.device = device
        self.model_path = model_path

    def load_model(self) -> TorchBlendshapes:  # imported here: torch loads in the worker only
        from pipeline.models.blendshapes_torch import TorchBlendshapes

        return TorchBlendshapes(device=self.device, model_path=self.model_path)

    def run_batch(self, batch: list[Sample]) -> list[list[Sample]]:
        scores = self.model.predict(np.stack([s.mesh for s in batch]))
        for sample, row in zip(batch, scores, strict=True):
            sample.blendshapes = row
        return [[sample] for sample in batch]
