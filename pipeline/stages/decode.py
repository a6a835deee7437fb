"""Decode: bytes -> RGB uint8 array. EXIF orientation applied; grey, alpha, CMYK, 16-bit made RGB.

Rejects: file_not_found, empty_file, file_too_large, not_an_image, corrupt_image, too_many_pixels,
too_small, unreadable_frame.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from collections.abc import Iterator

import numpy as np
from PIL import Image, UnidentifiedImageError

from pipeline.config import DecodeConfig
from pipeline.domain.record import Sample, SourceItem
from pipeline.io import storage
from pipeline.stages.base import Stage


def to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL mode -> 8-bit RGB; transparent pixels composited on white (not black, which hides faces)."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        array = np.asarray(image, dtype=np.float64)
        # I;16* modes are 16-bit by definition (a dark 16-bit image must not pass as 8-bit);
        # mode I (32-bit) is ambiguous, so its range decides.
        sixteen_bit = image.mode.startswith("I;16") or array.max() > 255
        scale = 255.0 / 65535.0 if sixteen_bit else 1.0
        image = Image.fromarray(np.clip(np.rint(array * scale), 0, 255).astype(np.uint8))
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


# Leading bytes of the image formats a corpus holds: a file that starts like one is a damaged image,
# not a file of another kind, when Pillow cannot identify it.
_SIGNATURES = (
    (b"\xff\xd8\xff", "JPEG"), (b"\x89PNG\r\n\x1a\n", "PNG"), (b"GIF87a", "GIF"), (b"GIF89a", "GIF"),
    (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"),
)


def image_signature(data: bytes) -> str | None:
    """The image format whose signature `data` starts with, if any."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return next((kind for magic, kind in _SIGNATURES if data.startswith(magic)), None)


# EXIF orientation -> the transpose that displays the image upright (as ImageOps.exif_transpose).
_ORIENTATION = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def apply_exif_orientation(image: Image.Image) -> Image.Image:
    """Rotate/flip by the EXIF orientation tag. Unlike ImageOps.exif_transpose it does not rewrite the
    EXIF block, which raises on photos whose (unused) metadata is malformed."""
    try:
        orientation = image.getexif().get(0x0112, 1)
    except Exception:  # noqa: BLE001 - unreadable metadata: keep the pixels as stored
        return image
    method = _ORIENTATION.get(orientation) if isinstance(orientation, int) else None
    return image.transpose(method) if method is not None else image


class DecodeStage(Stage):
    name = "decode"
    reads = frozenset({"item"})
    writes = frozenset({"pixels", "image_sha256", "source_width", "source_height"})
    reasons = (
        "file_not_found", "empty_file", "file_too_large", "not_an_image", "corrupt_image",
        "too_many_pixels", "too_small", "unreadable_frame",
    )

    def __init__(self, cfg: DecodeConfig) -> None:
        super().__init__()
        self.cfg = cfg

    def run(self, item: SourceItem) -> Iterator:
        if item.frame_index is not None:
            yield from self._video_frame(item)
            return
        try:
            size = len(item.data) if item.data is not None else storage.size(item.uri)  # a path or a URL
        except OSError as exc:
            yield self.reject(item, "file_not_found", str(exc))
            return
        if size == 0:
            yield self.reject(item, "empty_file")
            return
        if size > self.cfg.max_file_bytes:
            yield self.reject(item, "file_too_large", f"{size} bytes > {self.cfg.max_file_bytes}")
            return
        data = item.data if item.data is not None else storage.read_bytes(item.uri)
        sha = hashlib.sha256(data).hexdigest()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                image = Image.open(io.BytesIO(data))
                width, height = image.size
                if width * height > self.cfg.max_pixels:
                    yield self._sized(item, "too_many_pixels", f"{width}x{height}", sha)
                    return
                image.load()
        except UnidentifiedImageError:
            kind = image_signature(data)
            if kind is not None:  # the bytes say it is an image, but Pillow cannot parse it: damaged
                yield self._sized(item, "corrupt_image", f"{kind} signature, but the file cannot be parsed", sha)
            else:
                yield self._sized(item, "not_an_image", "not a recognised image format", sha)
            return
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            yield self._sized(item, "too_many_pixels", str(exc), sha)
            return
        except (OSError, SyntaxError, ValueError) as exc:
            yield self._sized(item, "corrupt_image", f"{type(exc).__name__}: {exc}", sha)
            return
        image = apply_exif_orientation(image)
        yield from self._emit(item, np.asarray(to_rgb(image)), sha)

    def _sized(self, item: SourceItem, reason: str, detail: str, sha: str):
        reject = self.reject(item, reason, detail)
        reject.image_sha256 = sha
        return reject

    def _video_frame(self, item: SourceItem) -> Iterator:
        import cv2

        with storage.local_file(item.uri) as path:  # OpenCV opens local files only
            capture = cv2.VideoCapture(path)
            try:
                capture.set(cv2.CAP_PROP_POS_FRAMES, item.frame_index)
                ok, frame = capture.read()
            finally:
                capture.release()
        if not ok or frame is None:
            yield self.reject(item, "unreadable_frame", f"frame {item.frame_index}")
            return
        rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        yield from self._emit(item, rgb, hashlib.sha256(rgb.tobytes()).hexdigest())

    def _emit(self, item: SourceItem, rgb: np.ndarray, sha: str) -> Iterator:
        height, width = rgb.shape[:2]
        if min(height, width) < self.cfg.min_side:
            yield self._sized(item, "too_small", f"{width}x{height} < {self.cfg.min_side}px", sha)
            return
        yield Sample(item, image_sha256=sha, pixels=rgb, source_width=width, source_height=height)
