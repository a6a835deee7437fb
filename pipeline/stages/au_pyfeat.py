"""AU backend `pyfeat`: py-feat's xgb AU detector on the aligned crop + 68 landmarks, batched.

A batched stage like the torch-blendshapes stage: the model is loaded once per worker (`setup`), and a
failed batch becomes one `internal_error` reject per sample. It replaces the blendshape->AU stage: it sets
au_intensity / au_present / au_source itself, through the mapping `au.pyfeat_mapping` (py-feat AU ->
vocabulary AU, probability -> 0-5 scale).
The 68 landmarks are the face-alignment backend's when present, else the MediaPipe mesh sampled at
py-feat's own iBUG-68 <- mesh-478 index map (`feat.utils.blendshape_to_au.DLIB68_FROM_MP478`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from pipeline.domain.record import Sample
from pipeline.errors import describe
from pipeline.stages.au import merge_corpus_aus
from pipeline.stages.base import ModelStage

if TYPE_CHECKING:
    from pipeline.models.pyfeat_au import PyFeatAU


@dataclass(frozen=True)
class PyFeatAUMapping:
    codes: list[str]  # vocabulary order
    sources: dict[str, str]  # vocabulary AU -> py-feat AU key
    not_measured: list[str]
    scale: float
    threshold: float
    version: str

    @classmethod
    def load(cls, mapping_file: Path, codes: list[str]) -> PyFeatAUMapping:
        """The mapping file, checked against the AU vocabulary's `codes`."""
        spec = json.loads(Path(mapping_file).read_text())
        sources = {target: key for key, target in spec["aus"].items()}
        unknown = sorted((set(sources) | set(spec["not_measured"])) - set(codes))
        unaccounted = [c for c in codes if c not in sources and c not in spec["not_measured"]]
        if unknown or unaccounted:
            raise ValueError(f"{mapping_file}: AUs not in the vocabulary {unknown}; vocabulary AUs neither mapped "
                             f"nor listed in not_measured {unaccounted}")
        if not 0 < spec["occurrence_threshold"] <= spec["scale"]:
            raise ValueError(f"{mapping_file}: occurrence_threshold must lie in (0, scale]")
        return cls(list(codes), sources, list(spec["not_measured"]), float(spec["scale"]),
                   float(spec["occurrence_threshold"]), f"pyfeat-map@{spec['version']}")

    def intensities(self, probs: np.ndarray, au_keys: list[str]) -> np.ndarray:
        """(B, len(au_keys)) py-feat probabilities -> (B, n_vocab) intensities on 0-5 (0 where not measured)."""
        missing = sorted({k for k in self.sources.values() if k not in au_keys})
        if missing:
            raise ValueError(f"py-feat model has no output for {', '.join(missing)}")
        out = np.zeros((len(probs), len(self.codes)), dtype=np.float32)
        for col, code in enumerate(self.codes):
            if code in self.sources:
                out[:, col] = probs[:, au_keys.index(self.sources[code])]
        return np.clip(out, 0.0, 1.0) * self.scale

    def present(self, intensity: np.ndarray) -> list[str]:
        return [c for c, v in zip(self.codes, intensity, strict=True) if c in self.sources and v >= self.threshold]


def landmarks_68_in_crop(sample: Sample) -> np.ndarray:
    """The face's 68 landmarks in aligned-crop pixels."""
    if sample.align_matrix is None:
        raise ValueError("sample was not aligned")
    if sample.landmarks_68 is not None:
        points = sample.landmarks_68[:, :2]
    else:
        from feat.utils.blendshape_to_au import DLIB68_FROM_MP478

        points = sample.mesh[list(DLIB68_FROM_MP478), :2]
    return cv2.transform(points[None].astype(np.float32), sample.align_matrix)[0]


class PyFeatAUStage(ModelStage):
    name = "au"
    reasons = ("no_landmarks",)
    reads = frozenset({"mesh", "crop_jpeg", "align_matrix"})  # landmarks_68 too, when a landmark step wrote them
    writes = frozenset({"au_intensity", "au_present", "au_source"})
    drops = frozenset({"mesh"})

    def __init__(self, mapping: PyFeatAUMapping, weights_dir: str | None, device: str | None) -> None:
        super().__init__()
        self.mapping = mapping
        self.weights_dir = weights_dir
        self.device = device

    def load_model(self) -> PyFeatAU:  # imported here: torch and py-feat load in the worker only
        from pipeline.models.pyfeat_au import PyFeatAU

        return PyFeatAU(self.weights_dir, self.device)

    def setup(self) -> None:
        super().setup()
        self.source_tag = f"model:{self.model.version}+{self.mapping.version}"

    def run_batch(self, batch: list[Sample]) -> list[list[Any]]:
        results: list[list[Any]] = [[] for _ in batch]
        ready, crops, points = [], [], []
        for i, sample in enumerate(batch):
            try:
                crop = cv2.imdecode(np.frombuffer(sample.crop_jpeg, np.uint8), cv2.IMREAD_COLOR)
                if crop is None:
                    raise ValueError("aligned crop does not decode")
                points.append(landmarks_68_in_crop(sample))
                crops.append(cv2.cvtColor(crop, cv2.COLOR_BGR2RGB))
                ready.append(i)
            except Exception as exc:  # noqa: BLE001 - one bad face is its own reject, not the batch's
                results[i] = [self.reject(sample, "no_landmarks", describe(exc))]
        if not ready:
            return results
        # The faces that reached the model fail together (the base would reject the whole batch; the faces
        # refused above keep their own reason).
        try:
            probs = self.model.predict(np.stack(crops), np.stack(points))
            intensity = self.mapping.intensities(probs, self.model.au_keys)
        except Exception as exc:  # noqa: BLE001 - a failed batch is a reject per face, never a failed run
            for i in ready:
                results[i] = [self.reject(batch[i], "internal_error", describe(exc))]
            return results
        for i, row in zip(ready, intensity, strict=True):
            sample = batch[i]
            sample.mesh = None  # last user of the mesh
            sample.au_intensity = row
            sample.au_present = self.mapping.present(row)
            sample.au_source = self.source_tag
            if sample.item.au_labels is not None:  # a corpus coding wins where it codes the AU; both kept
                merge_corpus_aus(sample, self.mapping.codes)
            results[i] = [sample]
        return results
