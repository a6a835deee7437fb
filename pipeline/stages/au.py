"""AU estimation from the Face Landmarker's 52 blendshapes through a mapping kept as data.

schemas/blendshape_to_au.json says which blendshapes make each AU and the floor/ceiling that turn
their activation into a 0-5 intensity; schemas/au_thresholds.json holds the occurrence threshold
of each AU (replaced by calibration). The output is aligned to the AU vocabulary order.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.record import Sample
from pipeline.stages.base import Stage
from pipeline.vocabulary import load_au_vocabulary

INTENSITY_MAX = 5.0


@dataclass
class BlendshapeAUMapping:
    codes: list[str]  # vocabulary order
    weights: np.ndarray  # (n_aus, 52): membership of each blendshape in each AU
    combine_max: np.ndarray  # (n_aus,) bool: max instead of mean over members
    floor: np.ndarray
    ceiling: np.ndarray
    thresholds: np.ndarray
    version: str

    @classmethod
    def load(cls, mapping_file: Path, thresholds_file: Path, vocabulary_file: Path,
             blendshapes_file: Path) -> BlendshapeAUMapping:
        mapping = json.loads(Path(mapping_file).read_text())
        thresholds = json.loads(Path(thresholds_file).read_text())
        names = json.loads(Path(blendshapes_file).read_text())["names"]
        codes = [row["code"] for row in load_au_vocabulary(vocabulary_file)]
        missing = [c for c in codes if c not in mapping["aus"]]
        if missing:
            raise ValueError(f"{mapping_file}: no mapping for vocabulary AU(s) {', '.join(missing)}")
        weights = np.zeros((len(codes), len(names)), dtype=np.float32)
        for row, code in enumerate(codes):
            entry = mapping["aus"][code]
            # Caught here, not as NaN intensities later: no members (0/0), a zero-width scale, a typo'd combine.
            if not entry["blendshapes"]:
                raise ValueError(f"{mapping_file}: {code} lists no blendshapes")
            if not entry["ceiling"] > entry["floor"]:
                raise ValueError(f"{mapping_file}: {code} needs ceiling > floor")
            if entry["combine"] not in ("mean", "max"):
                raise ValueError(f"{mapping_file}: {code} combine must be mean or max, not {entry['combine']!r}")
            for name in entry["blendshapes"]:
                if name not in names:
                    raise ValueError(f"{mapping_file}: {code} uses unknown blendshape {name!r}")
                weights[row, names.index(name)] = 1.0
        spec = [mapping["aus"][c] for c in codes]
        return cls(
            codes=codes,
            weights=weights,
            combine_max=np.array([s["combine"] == "max" for s in spec]),
            floor=np.array([s["floor"] for s in spec], dtype=np.float32),
            ceiling=np.array([s["ceiling"] for s in spec], dtype=np.float32),
            thresholds=np.array([thresholds["thresholds"].get(c, 1.0) for c in codes], dtype=np.float32),
            version=f"blendshape-map@{mapping['version']}+thresholds@{thresholds['version']}",
        )

    def intensities(self, blendshapes: np.ndarray) -> np.ndarray:
        """(..., 52) blendshape scores -> (..., n_aus) intensities on the 0-5 scale."""
        scores = np.asarray(blendshapes, dtype=np.float32)
        members = scores[..., None, :] * self.weights  # (..., n_aus, 52)
        mean = members.sum(-1) / self.weights.sum(-1)
        activation = np.where(self.combine_max, members.max(-1), mean)
        scaled = (activation - self.floor) / (self.ceiling - self.floor)
        return (np.clip(scaled, 0.0, 1.0) * INTENSITY_MAX).astype(np.float32)

    def present(self, intensity: np.ndarray) -> list[str]:
        return [code for code, value, t in zip(self.codes, intensity, self.thresholds, strict=True) if value >= t]


class AUStage(Stage):
    name = "au"
    reasons = ("no_blendshapes",)

    def __init__(self, mapping: BlendshapeAUMapping, detector_version: str) -> None:
        super().__init__()
        self.mapping = mapping
        self.source_tag = f"model:{detector_version}+{mapping.version}"

    def run(self, sample: Sample) -> Iterator:
        if sample.blendshapes is None or not np.isfinite(sample.blendshapes).all():
            yield self.reject(sample, "no_blendshapes", "detector returned no usable blendshape scores")
            return
        sample.mesh = None  # last user of the mesh (torch-blendshapes recomputes scores from it)
        sample.au_intensity = self.mapping.intensities(sample.blendshapes)
        sample.au_present = self.mapping.present(sample.au_intensity)
        sample.au_source = self.source_tag
        if sample.item.au_labels is not None:
            merge_corpus_aus(sample, self.mapping.codes)
        yield sample


def merge_corpus_aus(sample: Sample, codes: list[str]) -> None:
    """A corpus annotation wins over the model estimate where the corpus codes the AU, and both are kept.

    The model estimate moves to au_model_*, the corpus coding (vocabulary AUs only; AU23, AU45, ... have no
    column) to au_label_*, and au_intensity/au_present become the effective AUs.
    """
    item = sample.item
    labels = item.au_labels or {}
    scope = set(codes) if item.au_annotated is None else set(item.au_annotated)
    annotated = [c for c in codes if c in scope]
    sample.au_model_intensity = sample.au_intensity
    sample.au_model_present = sample.au_present
    sample.au_model_source = sample.au_source
    sample.au_label_intensity = [float(labels.get(c, 0.0)) if c in scope else None for c in codes]
    sample.au_label_present = [c for c in annotated if labels.get(c, 0.0) > 0]
    sample.au_label_source = f"corpus:{item.source}"
    sample.au_annotated = annotated
    model = sample.au_model_intensity
    sample.au_intensity = np.array(
        [label if label is not None else model[i] for i, label in enumerate(sample.au_label_intensity)],
        dtype=np.float32)
    model_present = set(sample.au_model_present)
    label_present = set(sample.au_label_present)
    sample.au_present = [c for c in codes if c in label_present or (c not in scope and c in model_present)]
    # Which inputs the effective AUs come from: the corpus alone when it codes every vocabulary AU.
    sample.au_source = sample.au_label_source if len(annotated) == len(codes) else (
        f"{sample.au_label_source}+{sample.au_model_source}")
