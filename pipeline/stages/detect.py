"""Detect: faces, 478-point mesh, blendshapes and head pose with the MediaPipe Face Landmarker.

One Sample in, one Sample per kept face out (policy `multi_face`: largest | reject | all).
Rejects: no_face, multiple_faces.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from dataclasses import replace

import numpy as np

from pipeline import affinity
from pipeline.config import DetectConfig
from pipeline.models.landmarker import FaceLandmarker
from pipeline.record import Sample
from pipeline.stages.base import Stage


def face_area(mesh: np.ndarray) -> float:
    x0, y0 = mesh[:, :2].min(axis=0)
    x1, y1 = mesh[:, :2].max(axis=0)
    return float((x1 - x0) * (y1 - y0))


class DetectStage(Stage):
    name = "detect"
    reasons = ("no_face", "multiple_faces")

    def __init__(self, cfg: DetectConfig, model_path: str | None = None,
                 pin: affinity.Scope | None = None, own_process: bool = False) -> None:
        super().__init__()
        self.cfg = cfg
        self.model_path = model_path
        self.pin = pin  # pin the worker ("process") or this stage's thread ("thread") to a core of its own
        self.own_process = own_process  # the worker is a process of its own: process-wide settings are ours
        self.pinned: affinity.Pinned | None = None
        self.landmarker: FaceLandmarker | None = None

    def setup(self) -> None:
        # Before the landmarker: MediaPipe's graph threads inherit the affinity of the thread creating them.
        if self.pin:
            self.pinned = affinity.pin(self.pin)
        # Loaded once per worker process; MediaPipe graphs are not shared between threads.
        self.landmarker = FaceLandmarker(
            self.model_path,
            max_faces=self.cfg.max_faces,
            min_detection_confidence=self.cfg.min_detection_confidence,
            min_presence_confidence=self.cfg.min_presence_confidence,
        )
        if self.own_process:
            # Imports and models are loaded and live as long as the worker: the garbage collector need never
            # walk them again. Without this, each worker spends ~0.5 s collecting them when it exits, and
            # Beam stops the workers one after the other.
            gc.freeze()

    def teardown(self) -> None:
        if self.landmarker is not None:
            self.landmarker.close()
            self.landmarker = None
        if self.pinned is not None:
            affinity.unpin(self.pinned)
            self.pinned = None

    def run(self, sample: Sample) -> Iterator:
        assert self.landmarker is not None, "setup() not called"
        faces = self.landmarker.detect(sample.pixels)
        if not faces:
            detail = f"no face at detection confidence >= {self.cfg.min_detection_confidence}"
            yield self.reject(sample, "no_face", detail)
            return
        if len(faces) > 1 and self.cfg.multi_face == "reject":
            yield self.reject(sample, "multiple_faces", f"{len(faces)} faces")
            return
        order = sorted(range(len(faces)), key=lambda i: face_area(faces[i].mesh), reverse=True)
        keep = order if self.cfg.multi_face == "all" else order[:1]
        for rank, index in enumerate(keep):
            face = faces[index]
            yield replace(
                sample,
                face_index=rank,
                num_faces_detected=len(faces),
                mesh=face.mesh,
                blendshapes=face.blendshapes,
                pose=face.pose,
            )
