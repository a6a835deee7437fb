"""Appearance features of a face for the AU head: what the skin shows, where the mesh's geometry cannot.

Wrinkles and bulges carry AUs the landmarks barely move with: the nose wrinkler (AU9), the brow lowerer's
furrows (AU4), the chin raiser's dimpling (AU17), the pressed lips (AU23, AU24). The descriptor is a histogram of
oriented gradients (HOG) of the aligned crop, grey, reduced to 48 x 48 pixels first: every face then goes through
the same low-resolution bottleneck (a 48 px grey CK+ crop and a sharp 4K photo give comparable gradients), which
keeps a head learned on small lab faces from reading a photo's fine texture as muscle activity.

A head that uses appearance carries its own projection (`Appearance`: the descriptor's mean and principal axes,
learned without labels on the calibration faces) and reads the first `k` components as features `app:pc1..k`.
The descriptor is computed from the crop's JPEG bytes, the same bytes a build stores and `fea calibrate` reads
back, so a head sees in a build exactly what it was fitted on.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from functools import cache
from typing import Any

import cv2
import numpy as np
from PIL import Image

DESCRIPTOR = "hog48-v1"  # the descriptor's definition below; a change of it is a new name
SIZE = 48
CELL = 6
BLOCK = 12
ORIENTATIONS = 8
LENGTH = ((SIZE - BLOCK) // CELL + 1) ** 2 * (BLOCK // CELL) ** 2 * ORIENTATIONS  # 1568
PREFIX = "app:pc"


@cache
def _hog() -> cv2.HOGDescriptor:
    return cv2.HOGDescriptor((SIZE, SIZE), (BLOCK, BLOCK), (CELL, CELL), (CELL, CELL), ORIENTATIONS)


def descriptor(crop_jpeg: bytes) -> np.ndarray:
    """(LENGTH,) float32 HOG of an aligned crop (its JPEG bytes), through the 48 px grey bottleneck."""
    image = Image.open(io.BytesIO(crop_jpeg))
    image.draft("L", (SIZE * 2, SIZE * 2))  # JPEG decodes straight at a reduced scale: the bottleneck is 48 px
    grey = np.asarray(image.convert("L").resize((SIZE, SIZE), Image.BOX), dtype=np.uint8)
    return _hog().compute(np.ascontiguousarray(grey)).reshape(-1).astype(np.float32)


def feature_names(k: int) -> list[str]:
    return [f"{PREFIX}{i + 1}" for i in range(k)]


@dataclass
class Appearance:
    """The projection a head applies to the descriptor: `(descriptor - mean) @ axes.T` -> k features."""

    mean: np.ndarray  # (LENGTH,) float32
    axes: np.ndarray  # (k, LENGTH) float32, orthonormal rows (float32: the head travels to every worker)
    name: str = DESCRIPTOR

    @property
    def names(self) -> list[str]:
        return feature_names(len(self.axes))

    def __post_init__(self) -> None:
        self.mean = np.asarray(self.mean, dtype=np.float32)
        self.axes = np.asarray(self.axes, dtype=np.float32)

    def project(self, descriptors: np.ndarray) -> np.ndarray:
        return ((np.asarray(descriptors, dtype=np.float32) - self.mean) @ self.axes.T).astype(np.float64)

    @classmethod
    def learn(cls, descriptors: np.ndarray, k: int) -> Appearance:
        """The first `k` principal axes of these descriptors (no labels), signs fixed so the result is
        reproducible: each axis points where its largest coordinate is positive."""
        x = np.asarray(descriptors, dtype=np.float64)
        mean = x.mean(axis=0)
        _, _, vt = np.linalg.svd(x - mean, full_matrices=False)
        axes = vt[:k]
        axes *= np.sign(axes[np.arange(len(axes)), np.abs(axes).argmax(axis=1)])[:, None]
        return cls(mean, axes)

    def to_dict(self) -> dict[str, Any]:
        # + 0.0 writes -0.0 (a rounded tiny negative) as 0.0: the same projection gives the same bytes and version
        return {"descriptor": self.name, "mean": (np.round(self.mean, 6) + 0.0).tolist(),
                "axes": (np.round(self.axes, 6) + 0.0).tolist()}

    @classmethod
    def from_dict(cls, spec: dict[str, Any], where: str = "AU head") -> Appearance:
        if spec.get("descriptor") != DESCRIPTOR:
            raise ValueError(f"{where}: appearance descriptor {spec.get('descriptor')!r}; this version computes "
                             f"{DESCRIPTOR!r}")
        mean, axes = np.asarray(spec["mean"], dtype=np.float64), np.asarray(spec["axes"], dtype=np.float64)
        if mean.shape != (LENGTH,) or axes.ndim != 2 or axes.shape[1] != LENGTH:
            raise ValueError(f"{where}: appearance projection must be a mean of {LENGTH} and axes (k, {LENGTH})")
        return cls(mean, axes)
