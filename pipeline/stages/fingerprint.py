"""Fingerprint: what the dedup step compares of a face, taken from its source image before alignment.

- a perceptual hash of the whole source image: the signs, against their median, of the `hash_bits` lowest
  DCT frequencies (zig-zag order, the mean left out) of a 32x32 grey thumbnail. Re-encoding, resizing
  and a change of exposure leave it almost unchanged; it finds candidate copies.
- the face's region of the source image (the mesh box scaled by `check.face_margin`, inside the image) as
  a grey `check.thumb_size` thumbnail, with the region's place in source-relative coordinates and the
  image's aspect ratio: what the second check compares (`pipeline.stages.dedup.face_residual`).

Runs where the source pixels and the mesh are both at hand (after detect, before align drops the pixels).
It rejects nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache

import cv2
import numpy as np

from pipeline.config import DedupConfig
from pipeline.domain.record import Sample
from pipeline.stages.base import Stage

HASH_GRID = 32  # side of the grey thumbnail whose DCT the hash reads


@dataclass(frozen=True)
class Fingerprint:
    phash: int  # hash_bits bits, the lowest frequency the most significant
    thumb: np.ndarray  # (thumb_size, thumb_size) uint8: the face's region of the source image, grey
    box: tuple[float, float, float, float]  # the region: x0, y0, x1, y1 as fractions of the source's width/height
    aspect: float  # source width / height
    detail: float  # source pixels per thumbnail pixel (under 1: the thumbnail is upsampled, its detail is less)


@cache
def zigzag(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Row and column indices of the first n cells of a HASH_GRID square in JPEG zig-zag order."""
    cells = sorted(((i, j) for i in range(HASH_GRID) for j in range(HASH_GRID)),
                   key=lambda c: (c[0] + c[1], c[0] if (c[0] + c[1]) % 2 else c[1]))[:n]
    return np.array([c[0] for c in cells]), np.array([c[1] for c in cells])


def grey(rgb: np.ndarray) -> np.ndarray:
    return rgb if rgb.ndim == 2 else cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)


def thumbnail(grey_image: np.ndarray, box: tuple[int, int, int, int], size: int,
              integral: np.ndarray | None = None) -> np.ndarray:
    """The region `box` (left, top, right, bottom) of a grey image resampled to size x size, float32.

    Downsampling averages each cell's area exactly, as cv2.resize's INTER_AREA does, but from the integral
    image (shared by the hash and the face thumbnail; several times faster on large images): the integral
    image of square pixels is bilinear inside each pixel, so interpolating it at the cells' fractional corners
    gives exact area sums. Upsampling (a region smaller than the thumbnail) is left to cv2.resize."""
    left, top, right, bottom = box
    if min(right - left, bottom - top) < size:
        region = grey_image[top:bottom, left:right]
        return cv2.resize(region, (size, size), interpolation=cv2.INTER_AREA).astype(np.float32)
    if integral is None:
        integral = cv2.integral(grey_image)
    steps = np.arange(size + 1) / size
    xs, ys = left + (right - left) * steps, top + (bottom - top) * steps
    x0 = np.minimum(xs.astype(int), integral.shape[1] - 2)
    y0 = np.minimum(ys.astype(int), integral.shape[0] - 2)
    fx, fy = xs - x0, ys - y0
    n = size + 1  # the integral image at the pixel corners around each cell corner, then their bilinear mix
    near = integral[np.ix_(np.concatenate([y0, y0 + 1]), np.concatenate([x0, x0 + 1]))].astype(np.float64)
    upper = near[:n, :n] * (1 - fx) + near[:n, n:] * fx
    lower = near[n:, :n] * (1 - fx) + near[n:, n:] * fx
    corners = upper * (1 - fy)[:, None] + lower * fy[:, None]
    sums = corners[1:, 1:] - corners[:-1, 1:] - corners[1:, :-1] + corners[:-1, :-1]
    return (sums / (np.diff(ys)[:, None] * np.diff(xs)[None, :])).astype(np.float32)


def perceptual_hash(rgb: np.ndarray, bits: int, integral: np.ndarray | None = None) -> int:
    """`bits`-bit DCT hash of an image (RGB or grey, any size; `integral`: its grey integral image, if known)."""
    image = grey(rgb)
    small = thumbnail(image, (0, 0, image.shape[1], image.shape[0]), HASH_GRID, integral)
    rows, cols = zigzag(bits + 1)
    coefficients = cv2.dct(small)[rows, cols][1:]  # without the mean (the DC term)
    signs = coefficients > np.median(coefficients)
    return int.from_bytes(np.packbits(signs).tobytes(), "big") >> (-bits % 8)


def face_region(mesh: np.ndarray, width: int, height: int, margin: float) -> tuple[int, int, int, int]:
    """The face's square box (mesh extent scaled by `margin`) in whole pixels, clipped to the image."""
    (x0, y0), (x1, y1) = mesh[:, :2].min(axis=0).tolist(), mesh[:, :2].max(axis=0).tolist()
    cx, cy, half = (x0 + x1) / 2, (y0 + y1) / 2, max(x1 - x0, y1 - y0) * margin / 2
    left, top = min(max(round(cx - half), 0), width - 1), min(max(round(cy - half), 0), height - 1)
    right, bottom = min(max(round(cx + half), left + 1), width), min(max(round(cy + half), top + 1), height)
    return left, top, right, bottom


def fingerprint(rgb: np.ndarray, mesh: np.ndarray, cfg: DedupConfig) -> Fingerprint:
    height, width = rgb.shape[:2]
    image = grey(rgb)
    integral = cv2.integral(image) if min(height, width) >= 2 * HASH_GRID else None
    box = face_region(mesh, width, height, cfg.check.face_margin)
    size = cfg.check.thumb_size
    thumb = np.rint(thumbnail(image, box, size, integral)).astype(np.uint8)  # means of 0..255: in range
    left, top, right, bottom = box
    return Fingerprint(perceptual_hash(image, cfg.hash_bits, integral), thumb,
                       (left / width, top / height, right / width, bottom / height), width / height,
                       min(right - left, bottom - top) / size)


class FingerprintStage(Stage):
    name = "fingerprint"
    reasons = ()
    reads = frozenset({"pixels", "mesh"})
    writes = frozenset({"fingerprint"})

    def __init__(self, cfg: DedupConfig) -> None:
        super().__init__()
        self.cfg = cfg

    def run(self, sample: Sample) -> Iterator:
        sample.fingerprint = fingerprint(sample.pixels, sample.mesh, self.cfg)
        yield sample
