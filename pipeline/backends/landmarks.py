"""Landmark backends (`detect.landmarks`): the points a face is found and aligned by.

Both find faces with the MediaPipe Face Landmarker (its detect stage, with retries, is theirs); `mediapipe`
aligns by the Landmarker's own 478-point mesh, `face-alignment` by FAN's 68 points computed in the
Landmarker's face box (a batched step after detection).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipeline.backends.base import Backend
from pipeline.models.files import resolve_model, resolve_weights
from pipeline.runner import pin_scope, worker_owns_process
from pipeline.stages.detect import DetectStage
from pipeline.stages.landmarks_fan import FanLandmarksStage
from pipeline.step import Step

if TYPE_CHECKING:
    from pipeline.config import Config
    from pipeline.knowledge import Knowledge


def mediapipe_backend(config: Config, knowledge: Knowledge) -> Backend:
    landmarker = resolve_model("face_landmarker", config.detect.model_path)
    detect = DetectStage(config.detect, str(landmarker.path), pin=pin_scope(config),
                         own_process=worker_owns_process(config))
    return Backend(f"mediapipe-face-landmarker@{landmarker.sha256[:12]}", {"face_landmarker": landmarker},
                   [Step("Detect", detect)])


def face_alignment_backend(config: Config, knowledge: Knowledge) -> Backend:
    landmarker = mediapipe_backend(config, knowledge)
    d = config.detect
    fan = resolve_weights("fan_2d", d.fan_weights)
    step = Step("FanLandmarks", FanLandmarksStage(str(fan.path), d.fan_device), d.fan_batch_size,
                config.au.accelerator)
    return Backend(f"{landmarker.version}+fan-2d@{fan.sha256[:12]}", {**landmarker.models, "fan_2d": fan},
                   [*landmarker.steps, step])
