"""AU backends (`au.backend`): what measures a face's action units.

`mediapipe` and `torch-blendshapes` apply the AU head of the knowledge (`au.head`) to the face's blendshapes
and mesh measures; they differ in where the blendshapes come from (the Face Landmarker itself, or the same
network in torch, batched, on a GPU when present). `pyfeat` runs py-feat's xgb AU detector instead of a head,
its probabilities mapped onto the vocabulary by `au.pyfeat_mapping`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipeline.au.head import INTENSITY_SCALE
from pipeline.builder.backends.base import Backend
from pipeline.builder.step import Step
from pipeline.models.files import resolve_weights
from pipeline.stages.au import AUStage
from pipeline.stages.au_pyfeat import PyFeatAUMapping, PyFeatAUStage
from pipeline.stages.blendshapes_torch import TorchBlendshapesStage

if TYPE_CHECKING:
    from pipeline.config import Config
    from pipeline.knowledge import Knowledge


def _with_head(knowledge: Knowledge, blendshapes: str, steps: tuple[Step, ...] = ()) -> Backend:
    """The AU head over blendshapes from `blendshapes` (a model version)."""
    head = knowledge.head
    return Backend(f"{blendshapes}+{head.tag}", steps=[*steps, Step("AU", AUStage(head, blendshapes))],
                   intensity_scale=INTENSITY_SCALE, head=head.summary())


def head_backend(config: Config, knowledge: Knowledge, landmarks: Backend) -> Backend:
    """`mediapipe`: the Face Landmarker's own blendshapes (CPU reference)."""
    return _with_head(knowledge, landmarks.version)


def torch_blendshapes_backend(config: Config, knowledge: Knowledge, landmarks: Backend) -> Backend:
    landmarker = landmarks.models["face_landmarker"]  # the torch network is ported from its blendshape model
    au = config.au
    step = Step("Blendshapes", TorchBlendshapesStage(au.device, str(landmarker.path)), au.max_batch_size,
                au.accelerator)
    return _with_head(knowledge, f"torch-blendshapes@{landmarker.sha256[:12]}", (step,))


def pyfeat_backend(config: Config, knowledge: Knowledge, landmarks: Backend) -> Backend:
    from pipeline.models.pyfeat_au import MODEL_NAME, pyfeat_version

    au = config.au
    weights = resolve_weights(MODEL_NAME, au.pyfeat_weights)
    mapping = PyFeatAUMapping.load(config.paths.au_pyfeat_mapping, knowledge.codes)
    step = Step("AU", PyFeatAUStage(mapping, str(weights.path), au.device), au.max_batch_size, au.accelerator)
    return Backend(f"pyfeat-xgb@{pyfeat_version()}+{weights.sha256[:12]}+{mapping.version}", {MODEL_NAME: weights},
                   [step], intensity_scale=f"0-5 = 5 x py-feat occurrence probability ({au.pyfeat_mapping})",
                   not_measured=list(mapping.not_measured))
