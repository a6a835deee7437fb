"""Head pose from a face mesh, as MediaPipe's face geometry pipeline computes it (the facial transformation matrix).

The Face Landmarker bundle holds `geometry_pipeline_metadata_landmarks.binarypb`: the canonical face model (468
vertices, centimetres) and the weights of the 33 landmarks a weighted Procrustes fit uses. MediaPipe places the
screen landmarks in a perspective camera's metric space (vertical field of view 63 degrees, near plane 1), fits
the canonical model to them twice (the first fit gives the depth scale), and reports the fit as a 4x4 matrix;
this module does the same in numpy, for meshes that did not come out of MediaPipe (the torch face backend).
"""

from __future__ import annotations

import math
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

GEOMETRY_MEMBER = "geometry_pipeline_metadata_landmarks.binarypb"
VERTICAL_FOV_DEGREES = 63.0  # MediaPipe's default face geometry environment
NEAR = 1.0
VERTEX_FLOATS = 5  # VERTEX_PT: x, y, z, u, v


def _varint(data: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[i]
        i += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, i


def _fields(data: bytes) -> list[tuple[int, object]]:
    """(field number, value) of a protobuf message: ints, floats (fixed32) and bytes (length-delimited)."""
    i, out = 0, []
    while i < len(data):
        key, i = _varint(data, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(data, i)
        elif wire == 5:
            value = struct.unpack_from("<f", data, i)[0]
            i += 4
        elif wire == 2:
            size, i = _varint(data, i)
            value = data[i:i + size]
            i += size
        elif wire == 1:
            value = data[i:i + 8]
            i += 8
        else:
            raise ValueError(f"protobuf wire type {wire} not expected in {GEOMETRY_MEMBER}")
        out.append((number, value))
    return out


def _floats(values: list[object]) -> np.ndarray:
    """A repeated float field, whether written packed (bytes) or one fixed32 per value."""
    out: list[float] = []
    for value in values:
        out.extend(np.frombuffer(value, "<f4").tolist() if isinstance(value, bytes) else [float(value)])
    return np.asarray(out, dtype=np.float64)


@dataclass(frozen=True)
class FaceGeometry:
    canonical: np.ndarray  # (3, 468) canonical face model, metric units
    weights: np.ndarray  # (468,) Procrustes weight of each landmark (33 non-zero)

    @classmethod
    def from_bytes(cls, data: bytes) -> FaceGeometry:
        # GeometryPipelineMetadata: canonical_mesh = 1 (Mesh3d: vertex_buffer = 3), procrustes_landmark_basis = 2
        # (WeightedLandmarkRef: landmark_id = 1, weight = 2).
        top = _fields(data)
        mesh = [v for n, v in top if n == 1]
        if len(mesh) != 1:
            raise ValueError(f"{GEOMETRY_MEMBER}: expected one canonical mesh, found {len(mesh)}")
        buffer = _floats([v for n, v in _fields(mesh[0]) if n == 3])
        if buffer.size == 0 or buffer.size % VERTEX_FLOATS:
            raise ValueError(f"{GEOMETRY_MEMBER}: vertex buffer of {buffer.size} floats is not x, y, z, u, v vertices")
        canonical = buffer.reshape(-1, VERTEX_FLOATS)[:, :3].T.copy()
        weights = np.zeros(canonical.shape[1])
        for n, value in top:
            if n == 2:
                ref = dict(_fields(value))
                weights[int(ref.get(1, 0))] = float(ref.get(2, 0.0))
        if not weights.any():
            raise ValueError(f"{GEOMETRY_MEMBER}: no Procrustes landmark weights")
        return cls(canonical, weights)

    @classmethod
    def from_bundle(cls, path: str | Path) -> FaceGeometry:
        with zipfile.ZipFile(path) as bundle:
            return cls.from_bytes(bundle.read(GEOMETRY_MEMBER))

    def transform(self, mesh_normalised: np.ndarray, width: int, height: int) -> np.ndarray:
        """MediaPipe's 4x4 facial transformation matrix for a mesh in normalised image coordinates (x, y in
        [0, 1] of the image, z scaled like x), in an image of `width` x `height` pixels."""
        count = self.canonical.shape[1]
        screen = np.asarray(mesh_normalised, dtype=np.float64)[:count].T.copy()  # (3, 468)
        height_at_near = 2.0 * NEAR * math.tan(0.5 * math.radians(VERTICAL_FOV_DEGREES))
        width_at_near = width * height_at_near / height
        left, bottom = -0.5 * width_at_near, -0.5 * height_at_near
        # Project onto the near plane (origin at the top-left corner: y flips).
        screen[1] = 1.0 - screen[1]
        screen *= np.array([[width_at_near], [height_at_near], [width_at_near]])
        screen += np.array([[left], [bottom], [0.0]])
        depth_offset = screen[2].mean()

        def metric(scale: float) -> np.ndarray:
            points = screen.copy()
            points[2] = (points[2] - depth_offset + NEAR) / scale
            points[0] *= points[2] / NEAR
            points[1] *= points[2] / NEAR
            points[2] *= -1.0
            return points

        first = screen.copy()
        first[2] *= -1.0
        first_scale = np.linalg.norm(self._fit(first)[:3, 0])
        second_scale = np.linalg.norm(self._fit(metric(first_scale))[:3, 0])
        return self._fit(metric(first_scale * second_scale))

    def _fit(self, target: np.ndarray) -> np.ndarray:
        """Weighted similarity transform canonical -> target (MediaPipe's SolveWeightedOrthogonalProblem)."""
        sqrt_w = np.sqrt(self.weights)
        total = float(self.weights.sum())
        sources = self.canonical * sqrt_w
        targets = target * sqrt_w
        centre = (self.canonical * self.weights).sum(axis=1, keepdims=True) / total
        centred = sources - centre * sqrt_w
        u, _, vt = np.linalg.svd(targets @ centred.T)
        if np.linalg.det(u) * np.linalg.det(vt) < 0:
            u[:, 2] *= -1.0
        rotation = u @ vt
        scale = float(((rotation @ centred) * targets).sum() / (centred * sources).sum())
        translation = ((targets - scale * rotation @ sources) * sqrt_w).sum(axis=1) / total
        matrix = np.eye(4)
        matrix[:3, :3] = scale * rotation
        matrix[:3, 3] = translation
        return matrix
