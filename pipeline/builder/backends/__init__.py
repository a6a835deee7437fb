"""Landmark and AU backends and their registry: `detect.landmarks` and `au.backend` in params -> a backend.

A backend is what the plan asks in one place about a model family: the steps it adds to the image work, the
version string the rows carry (`detector`, `au_model`), the model files it loads (checksummed, for the
manifest), and, for an AU backend, what its 0-5 intensities mean, the AU head it applies (if any) and the
vocabulary AUs it cannot measure. A new backend is a function here that returns a `Backend`.

    landmarks = landmark_backend(config, knowledge)          # auto | mediapipe | torch | face-alignment
    au = au_backend(config, knowledge, landmarks)             # mediapipe | torch-blendshapes | pyfeat
"""

from __future__ import annotations

from collections.abc import Callable

from pipeline.builder.backends.au import head_backend, pyfeat_backend, torch_blendshapes_backend
from pipeline.builder.backends.base import Backend
from pipeline.builder.backends.landmarks import auto_backend, face_alignment_backend, mediapipe_backend, torch_backend
from pipeline.config import Config, ConfigError
from pipeline.knowledge import Knowledge

LANDMARK_BACKENDS: dict[str, Callable[[Config, Knowledge], Backend]] = {
    "auto": auto_backend,
    "mediapipe": mediapipe_backend,
    "torch": torch_backend,
    "face-alignment": face_alignment_backend,
}
# An AU backend reads the landmark backend's faces; the MediaPipe one names its blendshapes by it.
AU_BACKENDS: dict[str, Callable[[Config, Knowledge, Backend], Backend]] = {
    "mediapipe": head_backend,
    "torch-blendshapes": torch_blendshapes_backend,
    "pyfeat": pyfeat_backend,
}


def _lookup(registry: dict[str, Callable[..., Backend]], name: str, param: str) -> Callable[..., Backend]:
    if name not in registry:
        raise ConfigError(f"{param}: unknown backend {name!r}; known: {', '.join(sorted(registry))}")
    return registry[name]


def landmark_backend(config: Config, knowledge: Knowledge) -> Backend:
    """The backend of `detect.landmarks`, its model files resolved (a missing one fails here)."""
    return _lookup(LANDMARK_BACKENDS, config.detect.landmarks, "detect.landmarks")(config, knowledge)


def au_backend(config: Config, knowledge: Knowledge, landmarks: Backend) -> Backend:
    """The backend of `au.backend`, its model files resolved (a missing one fails here)."""
    return _lookup(AU_BACKENDS, config.au.backend, "au.backend")(config, knowledge, landmarks)


__all__ = ["AU_BACKENDS", "LANDMARK_BACKENDS", "Backend", "au_backend", "landmark_backend"]
