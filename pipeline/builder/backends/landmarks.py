"""Landmark backends (`detect.landmarks`): the points a face is found and aligned by.

All find faces with the Face Landmarker's networks (the detect stage, with retries): `mediapipe` runs them
through MediaPipe one image at a time, `torch` in torch over batches of images (GPU when present; the same faces
within the tolerances tests/test_face_landmarker_torch.py checks), `auto` picks torch where the planning machine
has a GPU and mediapipe elsewhere (on a CPU MediaPipe is ~4x faster, docs/cluster.md). `mediapipe` and `torch`
align by the Landmarker's 478-point mesh, `face-alignment` by FAN's 68 points computed in its face box (a
batched step after detection).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.builder.backends.base import Backend
from pipeline.builder.step import Step
from pipeline.models.files import resolve_model, resolve_weights
from pipeline.process.affinity import pin_scope, worker_owns_process
from pipeline.stages.detect import DetectStage, TorchDetectStage
from pipeline.stages.landmarks_fan import FanLandmarksStage

if TYPE_CHECKING:
    from pipeline.config import Config
    from pipeline.knowledge import Knowledge


def mediapipe_backend(config: Config, knowledge: Knowledge) -> Backend:
    landmarker = resolve_model("face_landmarker", config.detect.model_path)
    detect = DetectStage(config.detect, str(landmarker.path), pin=pin_scope(config),
                         own_process=worker_owns_process(config))
    return Backend(f"mediapipe-face-landmarker@{landmarker.sha256[:12]}", {"face_landmarker": landmarker},
                   [Step("Detect", detect)])


def torch_backend(config: Config, knowledge: Knowledge) -> Backend:
    d = config.detect
    landmarker = resolve_model("face_landmarker", d.model_path)
    detect = TorchDetectStage(d, str(landmarker.path), d.torch_device)
    step = Step("Detect", detect, d.torch_batch_size, config.au.accelerator)
    return Backend(f"torch-face-landmarker@{landmarker.sha256[:12]}", {"face_landmarker": landmarker}, [step])


def auto_backend(config: Config, knowledge: Knowledge) -> Backend:
    """torch on a machine with a GPU, mediapipe elsewhere (decided where the build is planned)."""
    return (torch_backend if gpu_present() else mediapipe_backend)(config, knowledge)


def gpu_present() -> bool:
    """Whether torch sees a CUDA device. On Linux without an NVIDIA device node torch is not even imported
    (1.6 s that every CPU build's launcher would pay)."""
    if sys.platform.startswith("linux") and not Path("/proc/driver/nvidia").exists() \
            and not any(Path("/dev").glob("nvidia[0-9]*")):
        return False
    import torch

    return torch.cuda.is_available()


def face_alignment_backend(config: Config, knowledge: Knowledge) -> Backend:
    landmarker = mediapipe_backend(config, knowledge)
    d = config.detect
    fan = resolve_weights("fan_2d", d.fan_weights)
    step = Step("FanLandmarks", FanLandmarksStage(str(fan.path), d.fan_device), d.fan_batch_size,
                config.au.accelerator)
    return Backend(f"{landmarker.version}+fan-2d@{fan.sha256[:12]}", {**landmarker.models, "fan_2d": fan},
                   [*landmarker.steps, step])
