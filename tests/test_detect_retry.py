"""Detection retries and low-resolution faces: tight crops and small images of real photos are found, their
landmarks are in the pixels of the image as given, the attempt that found them is recorded, a face found on
the first try costs one detection, and small faces are kept and flagged rather than rejected."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_reject, only, run_stage
from PIL import Image
from pydantic import ValidationError

from pipeline.config import FIRST_ATTEMPT, DecodeConfig, DetectAttempt, DetectConfig, load_config
from pipeline.domain.record import Sample, SourceItem
from pipeline.models.landmarker import DetectedFace
from pipeline.stages.align import five_points
from pipeline.stages.decode import DecodeStage
from pipeline.stages.detect import retry_image, to_original

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks import derived  # noqa: E402


class CountingLandmarker:
    """The real landmarker, counting its calls."""

    def __init__(self, landmarker) -> None:
        self.landmarker, self.calls = landmarker, 0

    def detect(self, rgb: np.ndarray):
        self.calls += 1
        return self.landmarker.detect(rgb)


def sample_of(rgb: np.ndarray, name: str = "x.jpg") -> Sample:
    return Sample(SourceItem("test", name, name), image_sha256=name, pixels=np.ascontiguousarray(rgb),
                  source_width=rgb.shape[1], source_height=rgb.shape[0])


def nme(points: np.ndarray, reference: np.ndarray) -> float:
    """Mean point error in units of the reference's inter-ocular distance."""
    return float(np.linalg.norm(points - reference, axis=1).mean() / np.linalg.norm(reference[0] - reference[1]))


@pytest.fixture(scope="module")
def wild_faces(wild_dir: Path, landmarker_stage) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, rgb, mesh) of the first 40 sample photos with a face found on the photo as given."""
    out = []
    for path in sorted((wild_dir / "images").iterdir())[:40]:
        rgb = np.asarray(Image.open(path).convert("RGB"))
        faces = landmarker_stage.landmarker.detect(rgb)
        if faces:
            out.append((path.name, rgb, faces[0].mesh))
    return out


def test_a_face_found_on_the_first_try_costs_one_detection(make_detect, demo_sample):
    stage = make_detect()
    stage.landmarker = CountingLandmarker(stage.landmarker)
    face = only(run_stage(stage, demo_sample("single_face.jpg")))
    assert isinstance(face, Sample) and face.detect_attempt == FIRST_ATTEMPT
    assert stage.landmarker.calls == 1


def test_no_face_after_every_attempt_says_what_was_tried(make_detect, demo_sample):
    stage = make_detect()
    stage.landmarker = CountingLandmarker(stage.landmarker)
    reject = assert_reject(only(run_stage(stage, demo_sample("free-mountain-vector-01.jpg"))), "detect", "no_face")
    assert stage.landmarker.calls == 1 + len(stage.cfg.retries) == 3
    assert "tried: original, pad25, pad50" in reject.detail


def test_tight_crops_are_found_by_a_retry_with_landmarks_in_the_crops_pixels(make_detect, wild_faces):
    """Crops to 90% of the face box: the face touches the frame on every side. Those the first try misses
    must be found by a retry, at the place the full photo's landmarks say (minus the crop's offset)."""
    stage = make_detect()
    retried = 0
    for name, rgb, mesh in wild_faces:
        crop = derived.tight_crop(rgb, mesh, 0.9)
        face = only(run_stage(stage, sample_of(crop, name)))
        assert isinstance(face, Sample), f"{name}: {face}"
        if face.detect_attempt == FIRST_ATTEMPT:
            continue
        retried += 1
        assert face.detect_attempt in {a.name for a in stage.cfg.retries}
        left, top, _, _ = derived.tight_box(mesh, 0.9, rgb.shape[1], rgb.shape[0])
        expected = five_points(mesh) - np.array([left, top], np.float32)
        assert nme(five_points(face.mesh), expected) < 0.08, name
    assert retried >= 3, "the first try found (nearly) every tight crop: this test no longer tests the retries"


def test_retry_mapping_round_trips():
    rng = np.random.default_rng(0)
    rgb = np.zeros((30, 50, 3), np.uint8)
    for attempt in (DetectAttempt(name="p", pad=0.25), DetectAttempt(name="u", upscale_to=90),
                    DetectAttempt(name="pu", pad=0.5, upscale_to=120)):
        image, offset, scale = retry_image(rgb, attempt)
        assert image.shape[0] == round(30 * scale) + 2 * offset and image.shape[1] == round(50 * scale) + 2 * offset
        points = rng.uniform(0, 30, (478, 3)).astype(np.float32)
        seen = np.column_stack([points[:, :2] * scale + offset, points[:, 2] * scale])  # where the attempt sees them
        back = to_original(DetectedFace(seen.astype(np.float32), np.zeros(52), (0, 0, 0)), offset, scale)
        assert np.allclose(back.mesh, points, atol=1e-3), attempt


def test_an_attempt_that_changes_nothing_is_skipped():
    rgb = np.zeros((200, 300, 3), np.uint8)
    assert retry_image(rgb, DetectAttempt(name="u", upscale_to=150)) is None
    assert retry_image(rgb, DetectAttempt(name="none")) is None
    image, offset, scale = retry_image(rgb, DetectAttempt(name="u", upscale_to=400))
    assert scale == 2.0 and offset == 0 and image.shape[:2] == (400, 600)


def test_attempt_names_are_checked():
    with pytest.raises(ValidationError, match="first try"):
        DetectAttempt(name=FIRST_ATTEMPT, pad=0.25)
    with pytest.raises(ValidationError, match="unique"):
        DetectConfig(retries=[DetectAttempt(name="a", pad=0.1), DetectAttempt(name="a", pad=0.2)])
    assert [a.name for a in load_config().detect.retries] == ["pad25", "pad50"]


# --- low-resolution faces ----------------------------------------------------------------------------


def test_48px_grey_face_crops_are_kept_and_flagged(make_detect, make_align, wild_faces, default_config):
    """FER2013-style 48x48 grey crops go through decode, detect and align with default params."""
    decode, detect = DecodeStage(default_config.decode), make_detect()
    align = make_align(**default_config.align.model_dump())
    kept = []
    for name, rgb, mesh in wild_faces[:20]:
        grey = Image.fromarray(derived.fer_crop(rgb, mesh)).convert("L")
        sample = only(run_stage(decode, SourceItem("fer", name, name, data=_png(grey))))
        assert isinstance(sample, Sample) and (sample.source_width, sample.source_height) == (48, 48)
        face = only(run_stage(detect, sample))
        if isinstance(face, Sample):
            face = only(run_stage(align, face))
        kept.append(face)
    faces = [f for f in kept if isinstance(f, Sample)]
    assert len(faces) >= 19, [f for f in kept if not isinstance(f, Sample)]
    assert all(f.low_resolution and default_config.align.min_face_px <= f.face_size_px < 24 for f in faces)


def test_a_large_face_is_not_flagged(make_detect, make_align, demo_sample):
    face = only(run_stage(make_align(), only(run_stage(make_detect(), demo_sample("single_face.jpg")))))
    assert face.face_size_px > 24 and not face.low_resolution


def test_small_images_reach_detection_and_tiny_ones_are_refused(image_file, decode_file, default_config):
    cfg = default_config.decode
    assert isinstance(decode_file(image_file("s.png", Image.new("RGB", (cfg.min_side, 40))), cfg), Sample)
    reject = assert_reject(decode_file(image_file("t.png", Image.new("RGB", (cfg.min_side - 1, 40))), cfg),
                           "decode", "too_small")
    assert f"< {cfg.min_side}px" in reject.detail
    assert DecodeConfig().min_side == cfg.min_side <= 24


def test_a_face_too_small_to_align_is_rejected_with_the_reason(make_detect, make_align, wild_faces):
    name, rgb, _ = wild_faces[0]
    face = only(run_stage(make_detect(), sample_of(derived.shrink(rgb, 24), name)))
    assert isinstance(face, Sample)
    reject = assert_reject(only(run_stage(make_align(min_face_px=face_size(face) + 1), face)), "align",
                           "face_too_small")
    assert "too few pixels" in reject.detail


def face_size(face: Sample) -> float:
    points = five_points(face.mesh)
    return float(np.linalg.norm(points[0] - points[1]))


def _png(image: Image.Image) -> bytes:
    import io

    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
