"""Rotated regions of images warped into a network's square input, in torch, pixel for pixel as MediaPipe does it.

MediaPipe's CPU image-to-tensor step maps the region's corners onto the output's with
`cv::getPerspectiveTransform` and samples the uint8 image with `cv::warpPerspective` (bilinear). The OpenCV it
ships runs the fixed-point path of that warp: each output pixel's source position is computed in double
precision, in blocks of 64 columns, and rounded (half to even) to 1/32 pixel; the four neighbours are blended
with those 1/32 weights and the result rounded half up to uint8. The same arithmetic here, on any torch device,
gives the same bytes: on inputs the networks see, the detector's scores then match MediaPipe's to 1e-7, while a
plain bilinear sampler (torch's grid_sample, or a float `cv2` build) leaves them 1e-3 apart, enough to move
the mesh and flip an AU near its threshold.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import torch

SUBPIXEL_BITS = 5  # OpenCV's INTER_BITS: positions in 1/32 pixel
SUBPIXEL = 1 << SUBPIXEL_BITS
BLOCK_ROWS = 16  # cv::warpPerspective works in blocks of BLOCK_SZ / 2 rows ...
BLOCK_AREA = 32 * 32  # ... and BLOCK_SZ * BLOCK_SZ / rows columns: the order of its sums (ties hang on it)


@dataclass
class Region:
    """A rotated rectangle of an image, in pixels: centre, size, rotation (radians, MediaPipe's sign)."""

    cx: float
    cy: float
    width: float
    height: float
    rotation: float


def inverse_map(region: Region, out: int) -> np.ndarray:
    """The 3x3 output -> source matrix OpenCV's warp uses for `region` warped onto `out` x `out` pixels."""
    angle = float(np.float32(np.float32(region.rotation) * np.float32(180.0)) / math.pi)  # float * 180.f / M_PI
    corners = cv2.boxPoints(((region.cx, region.cy), (region.width, region.height), angle)).astype(np.float32)
    target = np.array([[0, out], [0, 0], [out, 0], [out, out]], np.float32)
    forward = cv2.getPerspectiveTransform(corners, target)
    _, inverse = cv2.invert(forward, flags=cv2.DECOMP_LU)
    return inverse


def source_positions(regions: list[Region], out: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, out, out) source x and y of every output pixel in 1/32 pixels (int64), as cv::warpPerspective rounds
    them. Each product and sum is its own torch op: no fused multiply-add changes a rounding."""
    m = torch.tensor(np.stack([inverse_map(r, out).ravel() for r in regions]), dtype=torch.float64, device=device)
    m = m[:, :, None, None]  # (N, 9, 1, 1)
    rows = min(BLOCK_ROWS, out)
    columns = min(BLOCK_AREA // rows, out)
    y = torch.arange(out, dtype=torch.float64, device=device)[:, None]
    x = torch.arange(out, dtype=torch.float64, device=device)[None, :]
    block = torch.div(x, columns, rounding_mode="floor") * columns  # each block's first column
    offset = x - block
    x0 = (m[:, 0] * block + m[:, 1] * y) + m[:, 2]
    y0 = (m[:, 3] * block + m[:, 4] * y) + m[:, 5]
    w0 = (m[:, 6] * block + m[:, 7] * y) + m[:, 8]
    w = w0 + m[:, 6] * offset
    w = torch.where(w != 0, SUBPIXEL / torch.where(w != 0, w, 1.0), 0.0)
    sx = torch.round((x0 + m[:, 0] * offset) * w).to(torch.int64)
    sy = torch.round((y0 + m[:, 3] * offset) * w).to(torch.int64)
    return sx, sy


def warp_regions(image: torch.Tensor, regions: list[Region], out: int, zero_border: bool) -> torch.Tensor:
    """(N, out, out, C) float32 uint8 values of `regions` of one (H, W, C) uint8 image, OpenCV's bilinear warp
    with a zero (BORDER_CONSTANT) or replicated (BORDER_REPLICATE) border."""
    height, width, channels = image.shape
    sx, sy = source_positions(regions, out, image.device)
    ix, iy = sx >> SUBPIXEL_BITS, sy >> SUBPIXEL_BITS
    fx = (sx & (SUBPIXEL - 1)).float() / SUBPIXEL  # multiples of 1/32: every weight and sum below is exact
    fy = (sy & (SUBPIXEL - 1)).float() / SUBPIXEL
    flat = image.reshape(-1, channels)  # uint8: only the sampled pixels are widened (a 12 MP photo stays 36 MB)
    total = torch.zeros(*sx.shape, channels, device=image.device)
    for dy, wy in ((0, 1 - fy), (1, fy)):
        for dx, wx in ((0, 1 - fx), (1, fx)):
            px, py = ix + dx, iy + dy
            index = (py.clamp(0, height - 1) * width + px.clamp(0, width - 1)).reshape(-1)
            value = flat[index].reshape(total.shape).float()
            weight = wx * wy
            if zero_border:
                weight = weight * ((px >= 0) & (px < width) & (py >= 0) & (py < height))
            total += value * weight[..., None]
    return torch.floor(total + 0.5)  # fixed point's (sum + half) >> bits: round half up
