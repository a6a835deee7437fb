"""Detect: faces, 478-point mesh, blendshapes and head pose with the Face Landmarker.

Two engines, one behaviour: `DetectStage` runs MediaPipe's Face Landmarker one image at a time (the CPU
reference), `TorchDetectStage` the same networks in torch over batches of images (`detect.landmarks: torch`, on
a GPU when there is one; pipeline.models.face_landmarker_torch).
One Sample in, one Sample per kept face out (policy `multi_face`: largest | reject | all).
When the image as given shows no face, the attempts of `detect.retries` are tried in order on changed
copies of it (a border, for faces that touch the frame; an upscale): the first that finds a face wins, its
name goes to `sample.detect_attempt` ("original" for the first try), and the mesh is mapped back to the
pixels of the image as given. A face found on the first try costs nothing extra.
Rejects: no_face (after every attempt), multiple_faces.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import TYPE_CHECKING

import cv2
import numpy as np

from pipeline.config import FIRST_ATTEMPT, DetectAttempt, DetectConfig
from pipeline.domain.record import Sample
from pipeline.models.landmarker import DetectedFace, FaceLandmarker
from pipeline.process import affinity
from pipeline.stages.base import ModelStage, Stage

if TYPE_CHECKING:
    from pipeline.models.face_landmarker_torch import TorchFaceLandmarker


def face_area(mesh: np.ndarray) -> float:
    x0, y0 = mesh[:, :2].min(axis=0)
    x1, y1 = mesh[:, :2].max(axis=0)
    return float((x1 - x0) * (y1 - y0))


def retry_image(rgb: np.ndarray, attempt: DetectAttempt) -> tuple[np.ndarray, float, float] | None:
    """The changed copy of `rgb` that `attempt` looks at, with the pixel offset and scale that map it back
    (original = (changed - offset) / scale); None when the attempt would not change this image."""
    image, scale = rgb, 1.0
    height, width = rgb.shape[:2]
    if attempt.upscale_to and min(height, width) < attempt.upscale_to:
        scale = attempt.upscale_to / min(height, width)
        image = cv2.resize(rgb, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_CUBIC)
    offset = round(max(image.shape[:2]) * attempt.pad)
    if offset:
        # Black: on the shared sample's tight crops and small images it finds as many faces as the image's mean
        # colour or more, and more than mirrored or repeated edges, which can look like more face (docs/detection.md).
        image = cv2.copyMakeBorder(image, offset, offset, offset, offset, cv2.BORDER_CONSTANT, value=(0, 0, 0))
    if image is rgb:
        return None
    return image, float(offset), scale


def to_original(face: DetectedFace, offset: float, scale: float) -> DetectedFace:
    """A face found on a changed copy, in the pixels of the image as given (z is scaled like x)."""
    mesh = (face.mesh - np.array([offset, offset, 0.0], np.float32)) / np.float32(scale)
    return replace(face, mesh=mesh.astype(np.float32))


def find_faces(detect: Callable[[list[np.ndarray]], list[list[DetectedFace]]], images: list[np.ndarray],
               retries: list[DetectAttempt]) -> list[tuple[list[DetectedFace], list[str]]]:
    """For each image, the faces of the first attempt that finds any (in the image's own pixels) and the names of
    the attempts made, that one last. `detect` finds the faces of many images; each attempt is one call over the
    images still without a face."""
    faces = detect(images)
    tried = [[FIRST_ATTEMPT] for _ in images]
    for attempt in retries:
        changed = {i: retry_image(images[i], attempt) for i, found in enumerate(faces) if not found}
        changed = {i: c for i, c in changed.items() if c is not None}  # None: it would look at the same image
        if not changed:
            continue
        for i, found in zip(changed, detect([image for image, _, _ in changed.values()]), strict=True):
            _, offset, scale = changed[i]
            tried[i].append(attempt.name)
            faces[i] = [to_original(face, offset, scale) for face in found]
    return list(zip(faces, tried, strict=True))


def kept_faces(stage: Stage, cfg: DetectConfig, sample: Sample, faces: list[DetectedFace],
               tried: list[str]) -> Iterator:
    """The samples (one per kept face) or the reject for `sample`, by the policy `multi_face`."""
    if not faces:
        detail = f"no face at detection confidence >= {cfg.min_detection_confidence} (tried: {', '.join(tried)})"
        yield stage.reject(sample, "no_face", detail)
        return
    attempt = tried[-1]
    stage.count(f"found_by.{attempt}")
    if len(faces) > 1 and cfg.multi_face == "reject":
        yield stage.reject(sample, "multiple_faces", f"{len(faces)} faces")
        return
    order = sorted(range(len(faces)), key=lambda i: face_area(faces[i].mesh), reverse=True)
    keep = order if cfg.multi_face == "all" else order[:1]
    for rank, index in enumerate(keep):
        face = faces[index]
        yield replace(
            sample,
            face_index=rank,
            num_faces_detected=len(faces),
            mesh=face.mesh,
            blendshapes=face.blendshapes,
            pose=face.pose,
            detect_attempt=attempt,
        )


class DetectStage(Stage):
    name = "detect"
    reasons = ("no_face", "multiple_faces")
    reads = frozenset({"pixels"})
    writes = frozenset({"mesh", "blendshapes", "pose", "face_index", "num_faces_detected", "detect_attempt"})

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

    def find_faces(self, rgb: np.ndarray) -> tuple[list[DetectedFace], list[str]]:
        """The faces of the first attempt that finds any (in `rgb`'s pixels) and the names of the attempts
        made, that one last."""
        assert self.landmarker is not None, "setup() not called"
        landmarker = self.landmarker
        return find_faces(lambda images: [landmarker.detect(image) for image in images], [rgb], self.cfg.retries)[0]

    def run(self, sample: Sample) -> Iterator:
        faces, tried = self.find_faces(sample.pixels)
        yield from kept_faces(self, self.cfg, sample, faces, tried)


class TorchDetectStage(ModelStage):
    """The Face Landmarker's networks in torch over a batch of images: the detector sees them all at once, the
    mesh and blendshape networks all their faces (the retries too, over the images still without a face)."""

    name = "detect"
    reasons = DetectStage.reasons
    reads, writes = DetectStage.reads, DetectStage.writes

    def __init__(self, cfg: DetectConfig, model_path: str | None = None, device: str | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.model_path = model_path
        self.device = device

    def load_model(self) -> TorchFaceLandmarker:  # imported here: torch loads in the worker only
        from pipeline.models.face_landmarker_torch import TorchFaceLandmarker

        return TorchFaceLandmarker(self.model_path, max_faces=self.cfg.max_faces,
                                   min_detection_confidence=self.cfg.min_detection_confidence,
                                   min_presence_confidence=self.cfg.min_presence_confidence, device=self.device)

    def run_batch(self, batch: list[Sample]) -> list[list]:
        found = find_faces(self.model.detect_batch, [s.pixels for s in batch], self.cfg.retries)
        return [list(kept_faces(self, self.cfg, sample, faces, tried))
                for sample, (faces, tried) in zip(batch, found, strict=True)]
