"""Align: similarity transform of five mesh points onto a canonical template; crop, quality, JPEG.

Faces whose inter-ocular distance is under `align.low_resolution_px` are kept and flagged `low_resolution`
(their crop is upsampled); only those under `align.min_face_px`, whose five points are too uncertain to
align by, are rejected.
Rejects: face_too_small (inter-ocular distance), extreme_pose (yaw/pitch), too_blurry, alignment_failed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import cv2
import numpy as np

from pipeline.config import AlignConfig
from pipeline.domain.record import Sample
from pipeline.stages.base import Stage

# Face-mesh indices of the five points, in image order for a frontal face:
# iris centre on the image-left eye, on the image-right eye, nose tip, image-left and image-right mouth corner.
FIVE_POINT_MESH_INDICES = (468, 473, 1, 61, 291)


@cache
def canonical_template(template_file: Path, crop_size: int) -> np.ndarray:
    spec = json.loads(Path(template_file).read_text())
    points = np.asarray(spec["points_112"], dtype=np.float64) / 112.0
    points = (points - 0.5) * spec["scale"] + 0.5
    points[:, 1] += spec.get("shift_y", 0.0)
    return (points * crop_size).astype(np.float32)


# iBUG-68 indices (0-based) of the same five points: eye centres (means of 36-41, 42-47), nose tip, mouth corners.
IBUG68_EYES = ((36, 42), (42, 48))
IBUG68_NOSE_TIP, IBUG68_MOUTH_CORNERS = 30, (48, 54)


def five_points(mesh: np.ndarray) -> np.ndarray:
    return mesh[list(FIVE_POINT_MESH_INDICES), :2].astype(np.float32)


def five_points_from_68(points: np.ndarray) -> np.ndarray:
    """The five alignment points from 68 iBUG landmarks (e.g. FAN's), in the same order as `five_points`."""
    eyes = [points[a:b, :2].mean(axis=0) for a, b in IBUG68_EYES]
    rest = [points[i, :2] for i in (IBUG68_NOSE_TIP, *IBUG68_MOUTH_CORNERS)]
    return np.stack([*eyes, *rest]).astype(np.float32)


def blur_score(gray: np.ndarray) -> float:
    """Variance of the Laplacian: low values mean a blurred crop. (int16 holds the 3x3 Laplacian of
    uint8 exactly; meanStdDev is ~10x faster than numpy's var on a float64 copy.)"""
    _, std = cv2.meanStdDev(cv2.Laplacian(gray, cv2.CV_16S))
    return float(std[0, 0]) ** 2


class AlignStage(Stage):
    name = "align"
    reasons = ("face_too_small", "extreme_pose", "too_blurry", "alignment_failed")
    reads = frozenset({"pixels", "mesh", "pose"})  # landmarks_68 too, when a landmark step wrote them
    writes = frozenset({"bbox", "landmarks_5", "landmarks_5_aligned", "align_matrix", "face_size_px", "low_resolution",
                        "blur_score", "crop_jpeg"})
    drops = frozenset({"pixels"})

    def __init__(self, cfg: AlignConfig, template_file: Path) -> None:
        super().__init__()
        self.cfg = cfg
        self.template_file = Path(template_file)

    def run(self, sample: Sample) -> Iterator:
        cfg = self.cfg
        # 68 landmarks from the face-alignment backend take precedence over the MediaPipe mesh.
        points = five_points(sample.mesh) if sample.landmarks_68 is None else five_points_from_68(sample.landmarks_68)
        inter_ocular = float(np.linalg.norm(points[0] - points[1]))
        yaw, pitch, _ = sample.pose
        if inter_ocular < cfg.min_face_px:
            yield self.reject(sample, "face_too_small", f"inter-ocular {inter_ocular:.1f}px < {cfg.min_face_px}px: "
                              "too few pixels to place the eyes, nose and mouth")
            return
        if abs(yaw) > cfg.max_abs_yaw or abs(pitch) > cfg.max_abs_pitch:
            yield self.reject(sample, "extreme_pose", f"yaw {yaw:.0f}, pitch {pitch:.0f}")
            return
        template = canonical_template(self.template_file, cfg.crop_size)
        matrix, _ = cv2.estimateAffinePartial2D(points, template, method=cv2.LMEDS)
        if matrix is None:
            yield self.reject(sample, "alignment_failed", "no similarity transform")
            return
        size = cfg.crop_size
        crop = cv2.warpAffine(sample.pixels, matrix, (size, size), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
        gray = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)
        blur = blur_score(gray)
        if blur < cfg.min_blur_score:
            yield self.reject(sample, "too_blurry", f"blur score {blur:.1f} < {cfg.min_blur_score}")
            return
        ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(crop, cv2.COLOR_RGB2BGR),
                                [cv2.IMWRITE_JPEG_QUALITY, cfg.jpeg_quality])
        if not ok:
            yield self.reject(sample, "alignment_failed", "JPEG encoding failed")
            return
        xy = sample.mesh[:, :2]
        sample.bbox = [float(v) for v in (*xy.min(axis=0), *xy.max(axis=0))]
        sample.landmarks_5 = points
        sample.landmarks_5_aligned = cv2.transform(points[None], matrix)[0]
        sample.align_matrix = matrix.astype(np.float32)
        sample.face_size_px = inter_ocular
        sample.low_resolution = inter_ocular < cfg.low_resolution_px
        sample.blur_score = blur
        sample.crop_jpeg = jpeg.tobytes()
        sample.pixels = None  # the full image is no longer needed; keep memory flat (the AU stage drops the mesh)
        yield sample
