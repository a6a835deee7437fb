"""MediaPipe Face Landmarker backend: face detection, 478-point mesh, 52 blendshapes, head pose."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.models.files import ModelFile, resolve_model


@dataclass
class DetectedFace:
    mesh: np.ndarray  # (478, 3) in source pixels; z scaled like x
    blendshapes: np.ndarray  # (52,) in [0, 1]
    pose: tuple[float, float, float]  # yaw, pitch, roll (degrees)


def euler_from_matrix(matrix: np.ndarray) -> tuple[float, float, float]:
    """Yaw, pitch, roll in degrees from MediaPipe's 4x4 facial transformation matrix."""
    r = np.asarray(matrix, dtype=np.float64)[:3, :3]
    pitch = np.degrees(np.arctan2(r[2, 1], r[2, 2]))
    yaw = np.degrees(np.arcsin(np.clip(-r[2, 0], -1.0, 1.0)))
    roll = np.degrees(np.arctan2(r[1, 0], r[0, 0]))
    return float(yaw), float(pitch), float(roll)


class FaceLandmarker:
    """Loads the Face Landmarker once; `detect(rgb)` returns every face found."""

    def __init__(
        self,
        model_path: str | None = None,
        max_faces: int = 4,
        min_detection_confidence: float = 0.5,
        min_presence_confidence: float = 0.5,
    ) -> None:
        import mediapipe as mp
        from mediapipe.tasks.python import vision
        from mediapipe.tasks.python.core.base_options import BaseOptions

        self.model: ModelFile = resolve_model("face_landmarker", model_path)
        self._mp = mp
        options = vision.FaceLandmarkerOptions(
            base_options=BaseOptions(model_asset_buffer=self.model.path.read_bytes()),
            running_mode=vision.RunningMode.IMAGE,
            num_faces=max_faces,
            min_face_detection_confidence=min_detection_confidence,
            min_face_presence_confidence=min_presence_confidence,
            output_face_blendshapes=True,
            output_facial_transformation_matrixes=True,
        )
        self._landmarker = vision.FaceLandmarker.create_from_options(options)
        self.blendshape_names: list[str] = []

    @property
    def version(self) -> str:
        return f"mediapipe-face-landmarker@{self.model.sha256[:12]}"

    def detect(self, rgb: np.ndarray) -> list[DetectedFace]:
        height, width = rgb.shape[:2]
        image = self._mp.Image(image_format=self._mp.ImageFormat.SRGB, data=np.ascontiguousarray(rgb))
        result = self._landmarker.detect(image)
        faces = []
        for i, landmarks in enumerate(result.face_landmarks):
            mesh = np.array([(p.x * width, p.y * height, p.z * width) for p in landmarks], dtype=np.float32)
            categories = result.face_blendshapes[i]
            if not self.blendshape_names:
                self.blendshape_names = [c.category_name for c in categories]
            scores = np.array([c.score for c in categories], dtype=np.float32)
            pose = euler_from_matrix(result.facial_transformation_matrixes[i])
            faces.append(DetectedFace(mesh, scores, pose))
        return faces

    def close(self) -> None:
        if self._landmarker is not None:
            self._landmarker.close()
            self._landmarker = None
