"""DecodeStage: every input mode becomes RGB uint8 HxWx3, EXIF orientation is applied, and each kind
of bad file becomes its own named reject; nothing escapes `process` as an exception."""

from __future__ import annotations

import hashlib
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import apache_beam as beam
import cv2
import numpy as np
import pytest
from conftest import assert_reject, only
from PIL import Image

from pipeline.config import DecodeConfig
from pipeline.domain.record import Reject, Sample, SourceItem
from pipeline.stages.base import REJECTS
from pipeline.stages.decode import DecodeStage, to_rgb

SMALL = DecodeConfig(min_side=8)


def gradient(width: int = 64, height: int = 48) -> Image.Image:
    x = np.linspace(0, 255, width, dtype=np.uint8)[None, :].repeat(height, 0)
    y = np.linspace(0, 255, height, dtype=np.uint8)[:, None].repeat(width, 1)
    return Image.fromarray(np.dstack([x, y, 255 - x]))


def png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height (no pixel data is ever needed to reject it)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def assert_rgb(sample: Sample | Reject, width: int, height: int) -> np.ndarray:
    assert isinstance(sample, Sample), sample
    assert sample.pixels.shape == (height, width, 3)
    assert sample.pixels.dtype == np.uint8
    assert (sample.source_width, sample.source_height) == (width, height)
    return sample.pixels


# --- modes -> RGB ------------------------------------------------------------------------------------


def test_rgb_jpeg_decodes_and_sha_is_of_file_bytes(image_file, decode_file):
    path = image_file("face.jpg", gradient(), quality=95)
    sample = decode_file(path, SMALL)
    assert_rgb(sample, 64, 48)
    assert sample.image_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert sample.item.source_item == "face.jpg"


def test_grayscale_becomes_three_equal_channels(image_file, decode_file):
    gray = Image.fromarray(np.tile(np.arange(64, dtype=np.uint8) * 4, (48, 1)), mode="L")
    pixels = assert_rgb(decode_file(image_file("gray.png", gray), SMALL), 64, 48)
    assert np.array_equal(pixels[..., 0], pixels[..., 1]) and np.array_equal(pixels[..., 1], pixels[..., 2])
    assert np.array_equal(pixels[..., 0], np.asarray(gray))


def test_rgba_is_composited_on_white(image_file, decode_file):
    rgba = np.zeros((48, 64, 4), dtype=np.uint8)
    rgba[:, :32] = (255, 0, 0, 255)  # opaque red
    rgba[:, 32:] = (0, 0, 255, 0)  # fully transparent blue: must not show, must not be black
    pixels = assert_rgb(decode_file(image_file("alpha.png", Image.fromarray(rgba, "RGBA")), SMALL), 64, 48)
    assert (pixels[:, :32] == (255, 0, 0)).all()
    assert (pixels[:, 32:] == (255, 255, 255)).all()


def test_half_transparent_pixel_is_blended(image_file, decode_file):
    rgba = np.full((16, 16, 4), (0, 0, 0, 128), dtype=np.uint8)
    pixels = assert_rgb(decode_file(image_file("half.png", Image.fromarray(rgba, "RGBA")), SMALL), 16, 16)
    assert np.allclose(pixels.astype(int), 127, atol=2)


def test_demo_png_with_alpha_decodes_to_rgb(demo_dir, decode_file):
    raw = Image.open(demo_dir / "Image_with_alpha.png")
    assert "A" in raw.getbands()
    assert_rgb(decode_file(demo_dir / "Image_with_alpha.png"), *raw.size)


def test_cmyk_jpeg_keeps_its_colours(image_file, decode_file):
    red = Image.new("RGB", (64, 48), (200, 30, 30)).convert("CMYK")
    path = image_file("cmyk.jpg", red, quality=95)
    assert Image.open(path).mode == "CMYK"
    pixels = assert_rgb(decode_file(path, SMALL), 64, 48)
    assert np.abs(pixels.reshape(-1, 3).mean(0) - (200, 30, 30)).max() < 20


def test_palette_png_with_transparency(image_file, decode_file):
    palette = Image.new("P", (32, 32), 0)
    palette.putpalette([0, 255, 0] + [0, 0, 0] * 255)  # index 0 green, index 1 black
    palette.paste(1, (0, 0, 16, 32))
    path = image_file("palette.png", palette, transparency=1)
    assert Image.open(path).mode == "P"
    pixels = assert_rgb(decode_file(path, SMALL), 32, 32)
    assert (pixels[:, :16] == 255).all(), "transparent palette entry must become white"
    assert (pixels[:, 16:] == (0, 255, 0)).all()


def test_palette_png_without_transparency(image_file, decode_file):
    path = image_file("p.png", gradient().convert("P", palette=Image.Palette.ADAPTIVE))
    pixels = assert_rgb(decode_file(path, SMALL), 64, 48)
    assert np.abs(pixels.astype(int) - np.asarray(gradient()).astype(int)).mean() < 12


@pytest.mark.parametrize(("value16", "expected8"), [(0, 0), (200, 1), (32768, 128), (65535, 255)])
def test_sixteen_bit_gray_png_is_scaled_to_eight_bits(image_file, decode_file, value16, expected8):
    path = image_file("deep.png", Image.fromarray(np.full((48, 64), value16, dtype=np.uint16)))
    assert Image.open(path).mode.startswith("I;16")
    pixels = assert_rgb(decode_file(path, SMALL), 64, 48)
    assert abs(int(pixels[0, 0, 0]) - expected8) <= 1, f"16-bit {value16} -> {pixels[0, 0, 0]}"
    assert len(np.unique(pixels)) == 1


def test_sixteen_bit_gradient_keeps_its_ramp(image_file, decode_file):
    ramp = np.tile(np.linspace(0, 65535, 64).astype(np.uint16), (48, 1))
    pixels = assert_rgb(decode_file(image_file("ramp16.png", Image.fromarray(ramp)), SMALL), 64, 48)
    assert np.abs(pixels[0, :, 0].astype(int) - np.linspace(0, 255, 64)).max() <= 1


def test_sixteen_bit_colour_png(tmp_path, decode_file):
    path = tmp_path / "rgb48.png"
    assert cv2.imwrite(str(path), np.full((48, 64, 3), 32768, dtype=np.uint16))
    pixels = assert_rgb(decode_file(path, SMALL), 64, 48)
    assert abs(int(pixels.mean()) - 128) <= 1


def test_to_rgb_handles_32bit_integer_mode():
    image = Image.fromarray(np.full((4, 4), 100, dtype=np.int32), mode="I")
    assert np.asarray(to_rgb(image)).tolist() == [[[100] * 3] * 4] * 4


def test_exif_orientation_6_is_rotated(image_file, decode_file):
    raw = np.zeros((48, 96, 3), dtype=np.uint8)
    raw[:, :48] = (255, 0, 0)  # left half red
    raw[:, 48:] = (0, 0, 255)  # right half blue
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    path = image_file("rotated.jpg", Image.fromarray(raw), exif=exif.tobytes(), quality=95)
    pixels = assert_rgb(decode_file(path, SMALL), 48, 96)  # width and height swapped
    top, bottom = pixels[:40].reshape(-1, 3).mean(0), pixels[56:].reshape(-1, 3).mean(0)
    assert top[0] > 200 and top[2] < 50, "the raw left half is on top after a clockwise turn"
    assert bottom[2] > 200 and bottom[0] < 50


def test_malformed_exif_block_still_decodes_rotated(image_file, decode_file):
    """A readable orientation beside a string stored under an integer tag (0x0103, Compression): Pillow's
    ImageOps.exif_transpose raises struct.error re-serialising such EXIF; decoding must not."""
    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x010F] = "Canon"
    data = bytearray(image_file("e.jpg", Image.new("RGB", (96, 48), "gray"), exif=exif.tobytes()).read_bytes())
    entry = data.find(b"\x01\x0f\x00\x02")  # big-endian IFD entry: tag 0x010F (Make), type ASCII
    assert entry > 0
    data[entry + 1] = 0x03  # tag 0x0103 (Compression, a SHORT) now holds a string
    assert_rgb(decode_file(image_file("bad_exif.jpg", bytes(data)), SMALL), 48, 96)


# --- rejects -----------------------------------------------------------------------------------------


def test_missing_file(tmp_path, decode_file):
    assert_reject(decode_file(tmp_path / "nope.jpg"), "decode", "file_not_found")


def test_zero_byte_file(image_file, decode_file):
    assert_reject(decode_file(image_file("empty.jpg", b"")), "decode", "empty_file")


def test_file_over_byte_limit(image_file, decode_file):
    path = image_file("big.jpg", gradient())
    assert_reject(decode_file(path, DecodeConfig(max_file_bytes=100)), "decode", "file_too_large")


def test_text_file_named_jpg(image_file, decode_file):
    reject = assert_reject(decode_file(image_file("notes.jpg", b"hello, not a photo\n" * 20)), "decode",
                           "not_an_image")
    assert reject.image_sha256 == hashlib.sha256(b"hello, not a photo\n" * 20).hexdigest()


@pytest.mark.parametrize("keep", [0.5, 0.9])
def test_truncated_jpeg_is_rejected_or_decoded_never_raised(demo_dir, image_file, keep):
    data = (demo_dir / "single_face.jpg").read_bytes()
    path = image_file("cut.jpg", data[: int(len(data) * keep)])
    outs = list(DecodeStage(DecodeConfig()).process(SourceItem("test", "cut.jpg", str(path))))
    out = only(outs)
    if isinstance(out, beam.pvalue.TaggedOutput):
        assert out.tag == REJECTS
        assert out.value.reason == "corrupt_image", out.value
    else:  # a Pillow that tolerates truncation must still give a full-size RGB image
        assert_rgb(out, 572, 562)


def test_header_claiming_20000_squared_pixels_is_a_bomb(image_file, decode_file):
    reject = assert_reject(decode_file(image_file("bomb.png", png_header(20000, 20000))), "decode",
                           "too_many_pixels")
    assert reject.image_sha256


def test_pixel_limit_from_config(image_file, decode_file):
    path = image_file("g.png", gradient(64, 48))
    assert isinstance(decode_file(path, DecodeConfig(min_side=8, max_pixels=64 * 48)), Sample)
    reject = assert_reject(decode_file(path, DecodeConfig(min_side=8, max_pixels=64 * 48 - 1)), "decode",
                           "too_many_pixels")
    assert "64x48" in reject.detail


def test_header_between_pillow_warning_and_error_limits(image_file, decode_file):
    # Pillow warns (not errors) between MAX_IMAGE_PIXELS and twice that; the stage turns it into a reject.
    side = int((Image.MAX_IMAGE_PIXELS * 1.5) ** 0.5)
    cfg = DecodeConfig(max_pixels=10 * Image.MAX_IMAGE_PIXELS)
    assert_reject(decode_file(image_file("warn.png", png_header(side, side)), cfg), "decode", "too_many_pixels")


def test_tiny_image_is_too_small(image_file, decode_file):
    reject = assert_reject(decode_file(image_file("tiny.png", gradient(10, 10))), "decode", "too_small")
    assert "10x10" in reject.detail


def test_min_side_applies_after_rotation(image_file, decode_file):
    exif = Image.Exif()
    exif[0x0112] = 6
    path = image_file("r.jpg", gradient(100, 60), exif=exif.tobytes())
    assert isinstance(decode_file(path, DecodeConfig(min_side=60)), Sample)
    assert_reject(decode_file(path, DecodeConfig(min_side=61)), "decode", "too_small")


# --- video frames ------------------------------------------------------------------------------------


def test_video_frame_decodes(demo_dir, decode_file):
    sample = decode_file(demo_dir / "single_face.mp4", frame_index=0)
    assert isinstance(sample, Sample) and sample.pixels.ndim == 3 and sample.pixels.shape[2] == 3
    assert sample.image_sha256 == hashlib.sha256(sample.pixels.tobytes()).hexdigest()


def test_video_frame_past_the_end(demo_dir, decode_file):
    assert_reject(decode_file(demo_dir / "single_face.mp4", frame_index=10**6), "decode", "unreadable_frame")


# --- process(): routing and the exception guard ------------------------------------------------------


class ExplodingDecode(DecodeStage):
    def run(self, item: SourceItem) -> Iterator:
        yield Sample(item)  # emitted before the failure: must not leak out next to the reject
        raise RuntimeError("boom in run")


def test_exception_in_run_becomes_internal_error_reject(tmp_path):
    item = SourceItem("test", "x.jpg", str(tmp_path / "x.jpg"))
    outs = list(ExplodingDecode(DecodeConfig()).process(item))
    tagged = only(outs)
    assert isinstance(tagged, beam.pvalue.TaggedOutput) and tagged.tag == REJECTS
    reject = assert_reject(tagged.value, "decode", "internal_error")
    assert "RuntimeError: boom in run" in reject.detail
    assert (reject.source, reject.source_item) == ("test", "x.jpg")


def test_process_routes_rejects_to_tag_and_samples_to_main(image_file, tmp_path):
    stage = DecodeStage(SMALL)
    good = list(stage.process(SourceItem("t", "g.png", str(image_file("g.png", gradient())))))
    bad = list(stage.process(SourceItem("t", "m.png", str(tmp_path / "missing.png"))))
    assert isinstance(only(good), Sample)
    assert isinstance(only(bad), beam.pvalue.TaggedOutput) and only(bad).tag == REJECTS
    assert only(bad).value.reason == "file_not_found"


def test_reject_reasons_are_declared(image_file):
    assert {"file_not_found", "empty_file", "not_an_image", "corrupt_image", "too_many_pixels",
            "too_small", "unreadable_frame", "file_too_large"} <= set(DecodeStage.reasons)


def test_nonexistent_dir_path_is_file_not_found(tmp_path: Path, decode_file):
    assert_reject(decode_file(tmp_path / "no" / "such" / "dir.png"), "decode", "file_not_found")
