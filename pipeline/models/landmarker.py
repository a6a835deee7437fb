"""MediaPipe Face Landmarker backend: face detection, 478-point mesh, 52 blendshapes, head pose."""

from __future__ import annotations

import ctypes
import logging
from dataclasses import dataclass

import numpy as np

from pipeline.models.files import ModelFile, resolve_model
from pipeline.process.quiet import native_output_filtered

log = logging.getLogger(__name__)


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


def _struct_dtype(struct: type[ctypes.Structure], fields: tuple[str, ...]) -> np.dtype:
    """A numpy dtype reading the float32 `fields` of a ctypes struct (other fields skipped)."""
    for name in fields:
        if dict(struct._fields_)[name] is not ctypes.c_float:
            raise TypeError(f"{struct.__name__}.{name} is not a float")
    return np.dtype({"names": list(fields), "formats": ["<f4"] * len(fields),
                     "offsets": [getattr(struct, name).offset for name in fields], "itemsize": ctypes.sizeof(struct)})


def _view(pointer, count: int, dtype: np.dtype) -> np.ndarray:
    """`count` structs at a ctypes pointer as a numpy record array (no copy: copy before the result is freed)."""
    if count == 0:
        return np.zeros(0, dtype)
    buffer = (ctypes.c_char * (count * dtype.itemsize)).from_address(ctypes.addressof(pointer.contents))
    return np.frombuffer(buffer, dtype=dtype, count=count)


class _RawResults:
    """Reads the Face Landmarker's C result struct straight into numpy.

    MediaPipe's own `detect` turns every one of the 478 landmarks of every face into a Python object
    (about 1.5 ms an image, a tenth of the whole detection). This calls the same C function and copies
    the arrays with numpy instead. It leans on MediaPipe internals (the ctypes structs of mediapipe
    >= 0.10.30): when the landmarker loads, the struct fields it reads must exist as floats and one call
    on a blank image must give what the public API gives; otherwise the public path is used. That the
    values agree on real faces is what tests/test_landmarker.py checks, against the public API.
    """

    def __init__(self, landmarker) -> None:
        from mediapipe.tasks.python.vision import face_landmarker as fl

        self._lib = landmarker._lib
        self._handle = landmarker._handle
        self._result_type = fl.MpFaceLandmarkerResultC
        self._detect = self._lib.MpFaceLandmarkerDetectImage
        self._close = self._lib.MpFaceLandmarkerCloseResult
        # numpy views of the C arrays, laid out from the ctypes structs' own field offsets.
        self._point = _struct_dtype(fl.landmark_c_lib.MpNormalizedLandmarkC, ("x", "y", "z"))
        self._category = _struct_dtype(fl.category_c_lib.MpCategoryC, ("score",))

    def detect(self, image) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray], list[str]]:
        """(meshes in normalised coordinates (n, 3), blendshape scores, 4x4 matrices, blendshape names)."""
        result = self._result_type()
        self._detect(self._handle, image._image_ptr, None, ctypes.byref(result))
        try:
            meshes, scores, matrices, names = [], [], [], []
            for i in range(result.face_landmarks_count):
                face = result.face_landmarks[i]
                points = _view(face.landmarks, face.landmarks_count, self._point)
                meshes.append(np.stack([points["x"], points["y"], points["z"]], axis=1))
            for i in range(result.face_blendshapes_count):
                categories = result.face_blendshapes[i]
                count = categories.categories_count
                scores.append(_view(categories.categories, count, self._category)["score"].copy())
                if not names:
                    names = [categories.categories[j].category_name.decode() for j in range(count)]
            for i in range(result.facial_transformation_matrixes_count):
                matrices.append(result.facial_transformation_matrixes[i].to_numpy())
        finally:
            self._close(ctypes.byref(result))
        return meshes, scores, matrices, names


class FaceLandmarker:
    """Loads the Face Landmarker once; `detect(rgb)` returns every face found."""

    def __init__(
        self,
        model_path: str | None = None,
        max_faces: int = 4,
        min_detection_confidence: float = 0.5,
        min_presence_confidence: float = 0.5,
        fast_results: bool = True,
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
        # MediaPipe's native logging prints ~5 lines to fd 2 while the graph loads and first runs.
        with native_output_filtered():
            self._landmarker = vision.FaceLandmarker.create_from_options(options)
            self.blendshape_names: list[str] = []
            self._raw = self._raw_reader() if fast_results else None

    def _raw_reader(self) -> _RawResults | None:
        """The numpy result reader, if its structs load and it answers a blank image as the public API does."""
        try:
            raw = _RawResults(self._landmarker)
            probe = self._mp.Image(image_format=self._mp.ImageFormat.SRGB, data=np.zeros((32, 32, 3), np.uint8))
            meshes, scores, matrices, _ = raw.detect(probe)
            public = self._landmarker.detect(probe)
            if (len(meshes), len(scores), len(matrices)) == (len(public.face_landmarks), len(public.face_blendshapes),
                                                             len(public.facial_transformation_matrixes)):
                return raw
        except Exception as exc:  # noqa: BLE001 - any mismatch with this mediapipe: use the public API
            log.warning("MediaPipe result structs differ from the expected ones (%s); using the slower public API",
                        exc)
        return None

    @property
    def version(self) -> str:
        return f"mediapipe-face-landmarker@{self.model.sha256[:12]}"

    def detect(self, rgb: np.ndarray) -> list[DetectedFace]:
        height, width = rgb.shape[:2]
        image = self._mp.Image(image_format=self._mp.ImageFormat.SRGB, data=np.ascontiguousarray(rgb))
        if self._raw is not None:
            meshes, scores, matrices, names = self._raw.detect(image)
            if names and not self.blendshape_names:
                self.blendshape_names = names
        else:
            meshes, scores, matrices = self._public_detect(image)
        scale = np.array([width, height, width], dtype=np.float32)
        return [DetectedFace((mesh * scale).astype(np.float32), score, euler_from_matrix(matrix))
                for mesh, score, matrix in zip(meshes, scores, matrices, strict=True)]

    def _public_detect(self, image) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
        result = self._landmarker.detect(image)
        meshes = [np.array([(p.x, p.y, p.z) for p in landmarks], dtype=np.float32)
                  for landmarks in result.face_landmarks]
        scores = []
        for categories in result.face_blendshapes:
            if not self.blendshape_names:
                self.blendshape_names = [c.category_name for c in categories]
            scores.append(np.array([c.score for c in categories], dtype=np.float32))
        return meshes, scores, list(result.facial_transformation_matrixes)

    def close(self) -> None:
        if self._landmarker is not None:
            self._landmarker.close()
            self._landmarker = None
