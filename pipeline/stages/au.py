"""AU estimation: the AU head (pipeline/au/head.py) applied to the face's blendshapes and mesh measures (and,
for a head that reads them, the aligned crop's appearance features).

The head is data (`au.head`: the default au_head.json, or a head learned with `fea calibrate`); its
output is aligned to the AU vocabulary order. It reads the face alone: the item's labels never reach
it. A corpus FACS coding, where the item has one, is merged afterwards (`merge_corpus_aus`).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from pipeline.au.head import AUHead
from pipeline.domain.record import Sample
from pipeline.stages.base import Stage


class AUStage(Stage):
    name = "au"
    reasons = ("no_blendshapes", "no_crop")
    writes = frozenset({"au_intensity", "au_present", "au_source"})
    drops = frozenset({"mesh"})

    def __init__(self, head: AUHead, blendshape_model: str) -> None:
        super().__init__()
        self.head = head
        # The crop only for a head that reads its appearance.
        self.reads = frozenset({"blendshapes", "face_measures"} | ({"crop_jpeg"} if head.appearance else set()))
        self.source_tag = f"model:{blendshape_model}+{head.tag}"

    def run(self, sample: Sample) -> Iterator:
        if sample.blendshapes is None or not np.isfinite(sample.blendshapes).all():
            yield self.reject(sample, "no_blendshapes", "detector returned no usable blendshape scores")
            return
        if self.head.appearance is not None and not sample.crop_jpeg:
            yield self.reject(sample, "no_crop", "the AU head reads the aligned crop's appearance; the face has none")
            return
        sample.mesh = None  # last user of the mesh (torch-blendshapes and the measure stage read it before)
        features = self.head.inputs(np.concatenate([sample.blendshapes, sample.face_measures]), sample.crop_jpeg)
        sample.au_intensity = self.head.intensities(features)
        sample.au_present = self.head.present(sample.au_intensity)
        sample.au_source = self.source_tag
        if sample.item.au_labels is not None:
            merge_corpus_aus(sample, self.head.codes)
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
    graded = set(item.au_graded or ())
    sample.au_label_graded = [c for c in sample.au_label_present if c in graded]
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
