"""AU backend `pyfeat`: py-feat's xgb AU detector on the aligned crop + 68 landmarks, batched.

RunInference-style like the torch-blendshapes stage: the model is loaded once per worker (`setup`),
batches come from `beam.BatchElements`, and a failed batch becomes one `internal_error` reject per
sample. It replaces the blendshape->AU stage: it sets au_intensity / au_present / au_source itself,
through schemas/pyfeat_to_au.json (py-feat AU -> vocabulary AU, probability -> 0-5 scale).
The 68 landmarks are the face-alignment backend's when present, else the MediaPipe mesh sampled at
py-feat's own iBUG-68 <- mesh-478 index map (`feat.utils.blendshape_to_au.DLIB68_FROM_MP478`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import apache_beam as beam
import cv2
import numpy as np
from apache_beam.metrics import Metrics

from pipeline.record import Reject, Sample
from pipeline.stages.au import merge_corpus_aus
from pipeline.stages.base import REJECTS, describe
from pipeline.vocabulary import load_au_vocabulary

STAGE = "au"


@dataclass(frozen=True)
class PyFeatAUMapping:
    codes: list[str]  # vocabulary order
    sources: dict[str, str]  # vocabulary AU -> py-feat AU key
    not_measured: list[str]
    scale: float
    threshold: float
    version: str

    @classmethod
    def load(cls, mapping_file: Path, vocabulary_file: Path) -> PyFeatAUMapping:
        spec = json.loads(Path(mapping_file).read_text())
        codes = [row["code"] for row in load_au_vocabulary(vocabulary_file)]
        sources = {target: key for key, target in spec["aus"].items()}
        unknown = sorted((set(sources) | set(spec["not_measured"])) - set(codes))
        unaccounted = [c for c in codes if c not in sources and c not in spec["not_measured"]]
        if unknown or unaccounted:
            raise ValueError(f"{mapping_file}: AUs not in the vocabulary {unknown}; vocabulary AUs neither mapped "
                             f"nor listed in not_measured {unaccounted}")
        if not 0 < spec["occurrence_threshold"] <= spec["scale"]:
            raise ValueError(f"{mapping_file}: occurrence_threshold must lie in (0, scale]")
        return cls(codes, sources, list(spec["not_measured"]), float(spec["scale"]),
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


class PyFeatAUStage(beam.DoFn):
    def __init__(self, mapping: PyFeatAUMapping, weights_dir: str | None, device: str | None) -> None:
        self.mapping = mapping
        self.weights_dir = weights_dir
        self.device = device
        self.model = None

    def setup(self) -> None:
        import torch

        from pipeline.models.pyfeat_au import PyFeatAU

        self.model = PyFeatAU(self.weights_dir, self.device)
        if self.model.device.type == "cpu":
            torch.set_num_threads(1)  # Beam runs one worker per core; more threads oversubscribe
        self.source_tag = f"model:{self.model.version}+{self.mapping.version}"
        self.batches = Metrics.distribution(STAGE, "batch_size")
        self.counters = {what: Metrics.counter(STAGE, what)
                         for what in ("in", "out", "reject.no_landmarks", "reject.internal_error")}

    def _reject(self, sample: Sample, reason: str, detail: str) -> beam.pvalue.TaggedOutput:
        self.counters[f"reject.{reason}"].inc()
        return beam.pvalue.TaggedOutput(REJECTS, Reject.of(sample.item, STAGE, reason, detail, sample.image_sha256))

    def process(self, batch: list[Sample]) -> Iterator:
        self.batches.update(len(batch))
        self.counters["in"].inc(len(batch))
        ready, crops, points = [], [], []
        for sample in batch:
            try:
                crop = cv2.imdecode(np.frombuffer(sample.crop_jpeg, np.uint8), cv2.IMREAD_COLOR)
                if crop is None:
                    raise ValueError("aligned crop does not decode")
                points.append(landmarks_68_in_crop(sample))
                crops.append(cv2.cvtColor(crop, cv2.COLOR_BGR2RGB))
                ready.append(sample)
            except Exception as exc:  # noqa: BLE001 - one bad face is its own reject, not the batch's
                yield self._reject(sample, "no_landmarks", describe(exc))
        if not ready:
            return
        try:
            probs = self.model.predict(np.stack(crops), np.stack(points))
            intensity = self.mapping.intensities(probs, self.model.au_keys)
        except Exception as exc:  # noqa: BLE001 - a failed batch is a reject per sample, never a failed run
            for sample in ready:
                yield self._reject(sample, "internal_error", describe(exc))
            return
        for sample, row in zip(ready, intensity, strict=True):
            sample.mesh = None  # last user of the mesh
            sample.au_intensity = row
            sample.au_present = self.mapping.present(row)
            sample.au_source = self.source_tag
            if sample.item.au_labels is not None:  # a corpus coding wins where it codes the AU; both kept
                merge_corpus_aus(sample, self.mapping.codes)
            self.counters["out"].inc()
            yield sample
