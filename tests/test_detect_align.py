"""DetectStage + AlignStage on real photos: mesh, blendshapes and pose per face, the multi-face policies,
an aligned crop whose landmarks land on the canonical template, and each quality reject."""

from __future__ import annotations

import io
import subprocess
import sys

import apache_beam as beam
import numpy as np
import pytest
from conftest import TEMPLATE_FILE, assert_reject, only, run_stage
from PIL import Image

from pipeline.domain.record import Sample
from pipeline.stages.align import FIVE_POINT_MESH_INDICES, canonical_template, five_points
from pipeline.stages.base import REJECTS
from pipeline.stages.detect import face_area


def detect_one(make_detect, sample: Sample) -> Sample:
    face = only(run_stage(make_detect(multi_face="largest"), sample))
    assert isinstance(face, Sample), face
    return face


def crop_of(face: Sample) -> np.ndarray:
    image = Image.open(io.BytesIO(face.crop_jpeg))
    assert image.format == "JPEG" and image.mode == "RGB"
    return np.asarray(image)


# --- detect ------------------------------------------------------------------------------------------


def test_single_face_has_mesh_blendshapes_and_pose(make_detect, demo_sample):
    sample = demo_sample("single_face.jpg")
    face = detect_one(make_detect, sample)
    assert face.mesh.shape == (478, 3)
    assert face.blendshapes.shape == (52,)
    assert np.isfinite(face.mesh).all() and np.isfinite(face.blendshapes).all()
    assert ((face.blendshapes >= 0) & (face.blendshapes <= 1)).all()
    assert (face.face_index, face.num_faces_detected) == (0, 1)
    xy = face.mesh[:, :2]
    assert (xy.min(0) > -5).all() and (xy.max(0) < (sample.source_width + 5, sample.source_height + 5)).all()
    yaw, pitch, roll = face.pose
    assert all(abs(angle) < 30 for angle in (yaw, pitch, roll)), face.pose  # a near-frontal portrait
    assert face.image_sha256 == sample.image_sha256 and face.item is sample.item


def test_mesh_five_points_are_in_image_order(make_detect, demo_sample):
    points = five_points(detect_one(make_detect, demo_sample("single_face.jpg")).mesh)
    left_eye, right_eye, nose, left_mouth, right_mouth = points
    assert left_eye[0] < right_eye[0] and left_mouth[0] < right_mouth[0]
    assert max(left_eye[1], right_eye[1]) < nose[1] < min(left_mouth[1], right_mouth[1])
    assert len(FIVE_POINT_MESH_INDICES) == 5


def test_no_face_is_rejected(make_detect, demo_sample):
    stage = make_detect()
    sample = demo_sample("free-mountain-vector-01.jpg")
    reject = assert_reject(only(run_stage(stage, sample)), "detect", "no_face")
    assert reject.image_sha256 == sample.image_sha256
    tagged = only(list(stage.process(demo_sample("free-mountain-vector-01.jpg"))))
    assert isinstance(tagged, beam.pvalue.TaggedOutput) and tagged.tag == REJECTS


def test_multi_face_largest_keeps_the_biggest(make_detect, demo_sample):
    every = run_stage(make_detect(multi_face="all"), demo_sample("multi_face.jpg"))
    face = only(run_stage(make_detect(multi_face="largest"), demo_sample("multi_face.jpg")))
    assert isinstance(face, Sample)
    assert face.num_faces_detected == len(every) > 1
    assert face.face_index == 0
    assert face_area(face.mesh) == pytest.approx(max(face_area(f.mesh) for f in every))


def test_multi_face_all_emits_every_face_by_size(make_detect, demo_sample):
    faces = run_stage(make_detect(multi_face="all"), demo_sample("multi_face.jpg"))
    assert len(faces) > 1 and all(isinstance(f, Sample) for f in faces)
    assert [f.face_index for f in faces] == list(range(len(faces)))
    assert {f.num_faces_detected for f in faces} == {len(faces)}
    areas = [face_area(f.mesh) for f in faces]
    assert areas == sorted(areas, reverse=True)
    assert len({f.face_id for f in faces}) == len(faces), "each face of one photo needs its own id"
    assert len({f.image_sha256 for f in faces}) == 1
    assert not np.allclose(faces[0].mesh, faces[1].mesh)
    assert faces[0].mesh is not faces[1].mesh and faces[0].item is faces[1].item


def test_multi_face_reject_policy(make_detect, demo_sample):
    reject = assert_reject(only(run_stage(make_detect(multi_face="reject"), demo_sample("multi_face.jpg"))),
                           "detect", "multiple_faces")
    assert reject.detail.endswith("faces") and int(reject.detail.split()[0]) > 1


def test_reject_policy_keeps_a_single_face(make_detect, demo_sample):
    assert isinstance(only(run_stage(make_detect(multi_face="reject"), demo_sample("single_face.jpg"))), Sample)


def test_greyscale_photo_is_detected(make_detect, demo_sample):
    face = detect_one(make_detect, demo_sample("0-f1-su-ph.jpg"))
    assert face.mesh.shape == (478, 3)


def test_stage_needs_setup(demo_sample):
    from pipeline.config import DetectConfig
    from pipeline.stages.detect import DetectStage

    out = only(list(DetectStage(DetectConfig()).process(demo_sample("single_face.jpg"))))
    assert out.tag == REJECTS and out.value.reason == "internal_error"  # guarded, not a crash


# --- align -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("crop_size", [224, 336])
def test_single_face_aligned_crop(make_detect, make_align, demo_sample, crop_size):
    face = detect_one(make_detect, demo_sample("single_face.jpg"))
    mesh = face.mesh.copy()
    out = only(run_stage(make_align(crop_size=crop_size), face))
    assert isinstance(out, Sample), out
    assert crop_of(out).shape == (crop_size, crop_size, 3)
    assert out.pixels is None, "the full image is dropped after alignment (the AU stage drops the mesh)"
    # Landmarks: the source five points, and their image under the warp, near the canonical template.
    assert np.allclose(out.landmarks_5, five_points(mesh))
    template = canonical_template(TEMPLATE_FILE, crop_size)
    error = np.linalg.norm(out.landmarks_5_aligned - template, axis=1)
    assert error[:2].max() < 0.02 * crop_size, f"eyes off the template by {error[:2]} px"
    # Nose and mouth follow the person's geometry and expression, not ArcFace's: looser bound.
    assert error.max() < 0.06 * crop_size, f"points off the template by {error} px"
    assert out.face_size_px == pytest.approx(np.linalg.norm(out.landmarks_5[0] - out.landmarks_5[1]))
    assert out.face_size_px > 24
    x0, y0, x1, y1 = out.bbox
    assert 0 <= x0 < x1 <= out.source_width + 5 and 0 <= y0 < y1 <= out.source_height + 5
    assert out.blur_score > 0


def test_crop_really_shows_the_face_on_the_template(make_detect, make_align, demo_sample, tmp_path, decode_file):
    """Re-detect on the written JPEG crop: the eyes must sit where the template says."""
    out = only(run_stage(make_align(crop_size=336), detect_one(make_detect, demo_sample("single_face.jpg"))))
    path = tmp_path / "crop.jpg"
    path.write_bytes(out.crop_jpeg)
    again = detect_one(make_detect, decode_file(path))
    eyes = five_points(again.mesh)[:2]
    template = canonical_template(TEMPLATE_FILE, 336)
    assert np.linalg.norm(eyes - template[:2], axis=1).max() < 10


def test_crop_keeps_channel_order(make_detect, make_align, demo_sample):
    sample = demo_sample("single_face.jpg")
    reddish = sample.pixels.astype(np.float32)
    reddish[..., 1:] *= 0.4
    sample.pixels = reddish.astype(np.uint8)
    crop = crop_of(only(run_stage(make_align(), detect_one(make_detect, sample))))
    middle = crop[100:236, 100:236].reshape(-1, 3).mean(0)
    assert middle[0] > 1.5 * middle[2], f"a red-tinted face came out as {middle} (RGB/BGR swapped?)"


def test_each_face_of_a_group_photo_aligns(make_detect, make_align, demo_sample):
    faces = run_stage(make_detect(multi_face="all"), demo_sample("multi_face.jpg"))
    crops = [only(run_stage(make_align(crop_size=128, min_face_px=0), f)) for f in faces]
    assert all(isinstance(c, Sample) and crop_of(c).shape == (128, 128, 3) for c in crops)
    assert crops[0].crop_jpeg != crops[1].crop_jpeg


def test_face_too_small(make_detect, make_align, demo_sample):
    face = detect_one(make_detect, demo_sample("single_face.jpg"))
    reject = assert_reject(only(run_stage(make_align(min_face_px=10_000), face)), "align", "face_too_small")
    assert "inter-ocular" in reject.detail and reject.image_sha256 == face.image_sha256


def test_extreme_pose(make_detect, make_align, demo_sample):
    face = detect_one(make_detect, demo_sample("single_face.jpg"))
    assert abs(face.pose[0]) > 0.01
    assert_reject(only(run_stage(make_align(max_abs_yaw=0.01), face)), "align", "extreme_pose")


def test_extreme_pitch(make_detect, make_align, demo_sample):
    face = detect_one(make_detect, demo_sample("single_face.jpg"))
    face.pose = (0.0, 75.0, 0.0)
    assert_reject(only(run_stage(make_align(), face)), "align", "extreme_pose")


def test_too_blurry(make_detect, make_align, demo_sample):
    face = detect_one(make_detect, demo_sample("single_face.jpg"))
    reject = assert_reject(only(run_stage(make_align(min_blur_score=1e9), face)), "align", "too_blurry")
    assert "blur score" in reject.detail


def test_blur_score_orders_sharp_above_blurred(make_detect, make_align, demo_sample):
    import cv2

    sharp = only(run_stage(make_align(), detect_one(make_detect, demo_sample("single_face.jpg"))))
    blurred_sample = demo_sample("single_face.jpg")
    face = detect_one(make_detect, blurred_sample)
    face.pixels = cv2.GaussianBlur(face.pixels, (0, 0), 4)
    blurred = only(run_stage(make_align(), face))
    assert blurred.blur_score < sharp.blur_score / 3
    threshold = (blurred.blur_score + sharp.blur_score) / 2
    face = detect_one(make_detect, demo_sample("single_face.jpg"))
    face.pixels = cv2.GaussianBlur(face.pixels, (0, 0), 4)
    assert_reject(only(run_stage(make_align(min_blur_score=threshold), face)), "align", "too_blurry")


def test_canonical_template_scales_with_crop():
    small, large = canonical_template(TEMPLATE_FILE, 112), canonical_template(TEMPLATE_FILE, 448)
    assert small.shape == (5, 2)
    assert np.allclose(large, small * 4, atol=1e-3)
    assert (small > 0).all() and (small < 112).all()
    assert small[0, 0] < small[1, 0] and small[3, 0] < small[4, 0]  # left before right


def test_a_worker_process_freezes_its_loaded_objects_and_a_shared_process_does_not() -> None:
    """gc.freeze after the model loads spares a worker process collecting its imports and model (on
    every full collection and at exit); a caller running the stage in its own process keeps its GC as is."""
    code = """
import gc
from pipeline.config import DetectConfig
from pipeline.stages.detect import DetectStage
for own in (False, True):
    before = gc.get_freeze_count()
    stage = DetectStage(DetectConfig(), own_process=own)
    stage.setup()
    print(own, gc.get_freeze_count() > before)
    stage.teardown()
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == ["False", "False", "True", "True"], out.stderr[-1000:]
