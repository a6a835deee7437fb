"""The Face Landmarker in torch (`detect.landmarks: torch`): the TFLite graph replay is exact, MediaPipe's pre- and
post-processing steps are reproduced, the faces agree with MediaPipe's on real photos, and the batched detect
stage behaves as the MediaPipe one (retries, policies, accounting) and runs in a build."""

from __future__ import annotations

import math
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import only
from PIL import Image

from pipeline.config import DetectConfig, load_config
from pipeline.domain.record import Sample, SourceItem
from pipeline.models.face_geometry import FaceGeometry
from pipeline.models.face_landmarker_torch import (
    DETECTOR_MEMBER,
    Detection,
    TorchFaceLandmarker,
    anchors,
    face_region,
    weighted_nms,
)
from pipeline.models.files import resolve_model
from pipeline.models.landmarker import euler_from_matrix
from pipeline.models.region_warp import Region, warp_regions
from pipeline.models.tflite_torch import _RUNNERS, TFLiteGraph
from pipeline.models.tflite_weights import TFLiteFormatError
from pipeline.stages.align import five_points
from pipeline.stages.base import Reject
from pipeline.stages.detect import DetectStage, TorchDetectStage

# Agreement with MediaPipe on the wild sample. Issue 22 asks for 0.01 IOD and 0.02; with MediaPipe's own warp
# the port measures 0.0001 IOD, 0.0001 and 0.2 degrees, so a dropped or approximated step fails these.
MAX_LANDMARK_ERROR_IOD = 0.001
MAX_BLENDSHAPE_MAE = 0.002
MAX_POSE_DEGREES = 1.0


@pytest.fixture(scope="module")
def bundle() -> Path:
    return resolve_model("face_landmarker").path


@pytest.fixture(scope="module")
def torch_landmarker() -> TorchFaceLandmarker:
    return TorchFaceLandmarker(device="cpu", max_faces=4)


@pytest.fixture(scope="module")
def wild_images(wild_dir: Path) -> list[tuple[str, np.ndarray]]:
    paths = sorted((wild_dir / "images").glob("*.jpg"))[:48]
    return [(p.name, np.asarray(Image.open(p).convert("RGB"))) for p in paths]


def sample_of(rgb: np.ndarray, name: str) -> Sample:
    return Sample(SourceItem("test", name, name), image_sha256=name, pixels=np.ascontiguousarray(rgb),
                  source_width=rgb.shape[1], source_height=rgb.shape[0])


# --- the graph replay ------------------------------------------------------------------------------------


def test_detector_graph_equals_mediapipe_on_inputs_that_need_no_resampling(bundle, wild_images):
    """MediaPipe's FaceDetector task runs the bundle's face_detector.tflite; on 128 x 128 images (no resampling)
    its scores and key points equal the torch replay's to float precision: a transposed kernel, a wrong padding,
    a dropped residual or a misread weight would move them by orders of magnitude more."""
    import mediapipe as mp
    from mediapipe.tasks.python import vision
    from mediapipe.tasks.python.core.base_options import BaseOptions

    with zipfile.ZipFile(bundle) as archive:
        model = archive.read(DETECTOR_MEMBER)
    options = vision.FaceDetectorOptions(base_options=BaseOptions(model_asset_buffer=model),
                                         min_detection_confidence=0.3)
    detector = vision.FaceDetector.create_from_options(options)
    graph = TFLiteGraph(model, DETECTOR_MEMBER).eval()
    landmarker = TorchFaceLandmarker(device="cpu", min_detection_confidence=0.3)
    compared = 0
    try:
        for _, rgb in wild_images[:16]:
            small = np.array(Image.fromarray(rgb).resize((128, 128), Image.BILINEAR))
            reference = detector.detect(mp.Image(image_format=mp.ImageFormat.SRGB, data=small)).detections
            if not reference:
                continue
            with torch.inference_mode():
                _, raw_scores = graph(torch.from_numpy(small).float()[None] / 127.5 - 1.0)
            assert abs(torch.sigmoid(raw_scores.max()).item() - reference[0].categories[0].score) < 1e-5
            mine = landmarker._detections([torch.from_numpy(small.copy())], [(128, 128)])[0][0]
            keypoints = np.array([[k.x, k.y] for k in reference[0].keypoints])
            assert np.abs(keypoints - mine.keypoints).max() < 1e-4
            compared += 1
    finally:
        detector.close()
    assert compared >= 10


def test_letterbox_and_decoding_equal_mediapipe_on_real_photos(bundle, wild_images):
    """The whole detection step on photos as given (350 px, resampled into 128 px by MediaPipe's own warp):
    scores and key points equal MediaPipe's FaceDetector's. A plain bilinear resampling leaves the scores 1e-3
    apart, a wrong letterbox or anchor 1e-1."""
    import mediapipe as mp
    from mediapipe.tasks.python import vision
    from mediapipe.tasks.python.core.base_options import BaseOptions

    with zipfile.ZipFile(bundle) as archive:
        model = archive.read(DETECTOR_MEMBER)
    options = vision.FaceDetectorOptions(base_options=BaseOptions(model_asset_buffer=model),
                                         min_detection_confidence=0.5)
    detector = vision.FaceDetector.create_from_options(options)
    landmarker = TorchFaceLandmarker(device="cpu", max_faces=1)
    try:
        for _, rgb in wild_images[:16]:
            reference = detector.detect(mp.Image(image_format=mp.ImageFormat.SRGB, data=rgb)).detections
            mine = landmarker._detections([torch.from_numpy(rgb.copy())], [(rgb.shape[1], rgb.shape[0])])[0]
            assert len(mine) == min(len(reference), 1)
            if mine:
                assert abs(mine[0].score - reference[0].categories[0].score) < 1e-5
                keypoints = np.array([[k.x, k.y] for k in reference[0].keypoints])
                assert np.abs(keypoints - mine[0].keypoints).max() < 1e-4
    finally:
        detector.close()


def test_region_warp_samples_as_opencv_fixed_point():
    image = torch.arange(64 * 64 * 3, dtype=torch.int64).reshape(64, 64, 3).remainder(251).to(torch.uint8)
    same = warp_regions(image, [Region(32, 32, 64, 64, 0.0)], 64, zero_border=True)[0]
    assert torch.equal(same, image.float())  # the image onto itself: every pixel as it is
    half = warp_regions(image, [Region(32, 32, 64, 64, 0.0)], 32, zero_border=True)[0]
    assert torch.equal(half, image[::2, ::2].float())  # corners onto corners: output u reads source 2u
    # A shift by half a pixel blends two neighbours 1:1, rounded half up (0.5 -> 1, as (sum + half) >> bits).
    pair = torch.tensor([[[0], [1]]], dtype=torch.uint8).expand(2, 2, 1).contiguous()
    shifted = warp_regions(pair, [Region(1.5, 1.0, 2, 2, 0.0)], 2, zero_border=False)[0]
    assert shifted[0, 0, 0].item() == 1.0
    # Rotated regions: a dot found in the warped output projects back (as the mesh points do) onto the dot.
    dot = torch.zeros(64, 64, 1, dtype=torch.uint8)
    dot[20, 40] = 255
    for rotation in (0.3, -1.2, math.pi / 2):
        region = Region(30.0, 28.0, 40.0, 40.0, rotation)
        warped = warp_regions(dot, [region], 64, zero_border=True)[0, :, :, 0]
        v, u = divmod(int(warped.argmax()), 64)
        point = TorchFaceLandmarker._project(np.array([[u / 64, v / 64, 0.0]]), region)[0]
        assert np.hypot(point[0] - 40, point[1] - 20) < 1.0


def test_an_op_the_reader_does_not_know_is_a_clear_error(bundle, monkeypatch):
    monkeypatch.delitem(_RUNNERS, "PRELU")
    with zipfile.ZipFile(bundle) as archive, pytest.raises(TFLiteFormatError, match="PRELU"):
        TFLiteGraph(archive.read("face_landmarks_detector.tflite"), "mesh")


def test_a_file_that_is_not_tflite_is_a_clear_error():
    with pytest.raises(TFLiteFormatError, match="TFL3"):
        TFLiteGraph(b"not a model at all", "x")


def test_graph_runs_any_batch_size(bundle):
    with zipfile.ZipFile(bundle) as archive:
        graph = TFLiteGraph(archive.read("face_landmarks_detector.tflite")).eval()
    x = torch.rand(3, 256, 256, 3)
    with torch.inference_mode():
        batched = graph(x)
        single = graph(x[1:2])
    assert [tuple(t.shape) for t in batched] == [(3, 1, 1, 1434), (3, 1, 1, 1), (3, 1)]
    assert torch.allclose(batched[0][1:2], single[0], atol=1e-3)


# --- MediaPipe's processing steps -------------------------------------------------------------------------


def test_anchors_are_blazeface_short_range():
    centres = anchors()
    assert centres.shape == (896, 2)
    assert np.allclose(centres[0], [0.5 / 16, 0.5 / 16]) and np.allclose(centres[1], centres[0])  # 2 per cell
    assert np.allclose(centres[512], [0.5 / 8, 0.5 / 8]) and np.allclose(centres[517], centres[512])  # 6 per cell
    assert np.allclose(centres[-1], [7.5 / 8, 7.5 / 8])


def test_weighted_nms_averages_overlapping_boxes_by_score():
    boxes = np.array([[0.1, 0.1, 0.5, 0.5], [0.12, 0.1, 0.52, 0.5], [0.6, 0.6, 0.9, 0.9]], np.float32)
    keypoints = np.zeros((3, 6, 2), np.float32)
    keypoints[1] += 1.0
    scores = np.array([0.9, 0.6, 0.7], np.float32)
    found = weighted_nms(scores, boxes, keypoints, limit=4)
    assert [round(d.score, 3) for d in found] == [0.9, 0.7]  # best first; the kept score is the group's best
    assert found[0].box[0] == pytest.approx((0.1 * 0.9 + 0.12 * 0.6) / 1.5)
    assert found[0].keypoints[0, 0] == pytest.approx(0.6 / 1.5)
    assert np.allclose(found[1].box, boxes[2])
    assert len(weighted_nms(scores, boxes, keypoints, limit=1)) == 1


def test_face_region_levels_the_eyes_and_squares_the_box():
    keypoints = np.zeros((6, 2), np.float32)
    keypoints[0], keypoints[1] = (0.4, 0.5), (0.6, 0.6)  # the left eye lower: the head tilts
    region = face_region(Detection(0.9, np.array([0.3, 0.4, 0.7, 0.7]), keypoints), width=200, height=100)
    assert (region.cx, region.cy) == pytest.approx((100.0, 55.0))
    assert region.width == region.height == pytest.approx(max(0.4 * 200, 0.3 * 100) * 1.5)
    assert region.rotation == pytest.approx(math.atan2(0.1 * 100, 0.2 * 200))


def test_pose_equals_mediapipes_facial_transformation(bundle, wild_images, landmarker_stage):
    """The geometry pipeline in numpy gives MediaPipe's own matrix for MediaPipe's own mesh."""
    geometry = FaceGeometry.from_bundle(bundle)
    raw = landmarker_stage.landmarker._raw
    if raw is None:
        pytest.skip("this mediapipe gives no raw results")
    import mediapipe as mp

    checked = 0
    for _, rgb in wild_images[:12]:
        meshes, _, matrices, _ = raw.detect(mp.Image(image_format=mp.ImageFormat.SRGB, data=rgb))
        for mesh, matrix in zip(meshes, matrices, strict=True):
            mine = geometry.transform(mesh, rgb.shape[1], rgb.shape[0])
            assert np.abs(mine - matrix).max() < 1e-3
            assert np.allclose(euler_from_matrix(mine), euler_from_matrix(matrix), atol=0.01)
            checked += 1
    assert checked >= 10


# --- the same faces as MediaPipe ----------------------------------------------------------------------------


def test_faces_agree_with_mediapipe_on_real_photos(torch_landmarker, wild_images, landmarker_stage):
    mediapipe = [landmarker_stage.landmarker.detect(rgb) for _, rgb in wild_images]
    ours = torch_landmarker.detect_batch([rgb for _, rgb in wild_images])
    counts = [(len(a), len(b)) for a, b in zip(mediapipe, ours, strict=True)]
    assert all(a == b for a, b in counts)
    landmark_errors, blendshape_errors, pose_errors, depth_ratios = [], [], [], []
    for theirs, mine in zip(mediapipe, ours, strict=True):
        for a, b in zip(theirs, mine, strict=False):  # a photo on the threshold may differ
            reference = five_points(a.mesh)
            inter_ocular = np.linalg.norm(reference[0] - reference[1])
            landmark_errors.append(np.linalg.norm(five_points(b.mesh) - reference, axis=1).mean() / inter_ocular)
            blendshape_errors.append(np.abs(a.blendshapes - b.blendshapes).mean())
            pose_errors.append(np.abs(np.subtract(a.pose, b.pose)).max())
            assert b.mesh.shape == (478, 3) and b.mesh.dtype == np.float32
            depth_ratios.append(np.abs(b.mesh[:, 2]).mean() / np.abs(a.mesh[:, 2]).mean())
    assert len(landmark_errors) >= 40
    assert np.mean(landmark_errors) < MAX_LANDMARK_ERROR_IOD
    assert np.mean(blendshape_errors) < MAX_BLENDSHAPE_MAE
    assert max(pose_errors) < MAX_POSE_DEGREES
    assert abs(np.mean(depth_ratios) - 1) < 0.02  # z in pixels, scaled like x (measured 1.003)


def test_batching_does_not_change_the_faces(wild_images):
    images = [rgb for _, rgb in wild_images[:6]]
    one = TorchFaceLandmarker(device="cpu", batch_size=1).detect_batch(images)
    many = TorchFaceLandmarker(device="cpu", batch_size=6).detect_batch(images)
    for a, b in zip(one, many, strict=True):
        assert len(a) == len(b)
        for fa, fb in zip(a, b, strict=True):
            assert np.abs(fa.mesh - fb.mesh).max() < 0.05 and np.abs(fa.blendshapes - fb.blendshapes).max() < 1e-3


def test_an_image_without_a_face_gives_no_face(torch_landmarker):
    assert torch_landmarker.detect_batch([np.full((120, 90, 3), 128, np.uint8), np.zeros((40, 300, 3), np.uint8)]) \
        == [[], []]


# --- the detect stage ----------------------------------------------------------------------------------------


def test_torch_stage_behaves_as_the_mediapipe_stage(wild_dir, wild_images, landmarker_stage):
    """Same faces, attempts, policies and rejects, over a batch that mixes a face found on the photo, photos whose
    face only a retry finds (the sample's tight crops) and an image without a face."""
    retried = ["HrithikRoshan_222.jpg", "Dwarakish_158.jpg"]  # pad50 and pad25 with MediaPipe
    photos = [wild_images[0], *[(n, np.asarray(Image.open(wild_dir / "images" / n).convert("RGB"))) for n in retried]]
    batch = [sample_of(rgb, name) for name, rgb in photos] + [sample_of(np.zeros((64, 64, 3), np.uint8), "b.jpg")]
    cfg = DetectConfig(max_faces=4)
    torch_stage = TorchDetectStage(cfg, device="cpu")
    torch_stage.setup()
    mediapipe_stage = DetectStage(cfg)
    mediapipe_stage.landmarker = landmarker_stage.landmarker
    ours = list(torch_stage.process(batch))
    theirs = [out for sample in batch for out in mediapipe_stage.process(sample)]
    assert len(ours) == len(theirs) == 4
    for a, b in zip(theirs, ours, strict=True):
        a, b = getattr(a, "value", a), getattr(b, "value", b)
        assert type(a) is type(b)
        if isinstance(a, Reject):
            assert (a.reason, a.detail) == (b.reason, b.detail)
        else:
            assert (a.detect_attempt, a.face_index, a.num_faces_detected) == \
                (b.detect_attempt, b.face_index, b.num_faces_detected)
            assert np.linalg.norm(five_points(a.mesh) - five_points(b.mesh), axis=1).mean() < 1.0
    assert [getattr(out, "detect_attempt", None) for out in ours[:3]] == ["original", "pad50", "pad25"]


def test_torch_stage_rejects_multiple_faces_by_policy(demo_dir):
    rgb = np.asarray(Image.open(demo_dir / "multi_face.jpg").convert("RGB"))
    stage = TorchDetectStage(DetectConfig(max_faces=4, multi_face="reject"), device="cpu")
    stage.setup()
    out = only(list(stage.process([sample_of(rgb, "multi_face.jpg")])))
    assert getattr(out, "value", out).reason == "multiple_faces"


# --- wiring --------------------------------------------------------------------------------------------------


def test_landmark_backends_torch_and_auto(monkeypatch):
    from pipeline.builder.backends import landmark_backend, landmarks
    from pipeline.knowledge import Knowledge

    config = load_config(overrides=["detect.landmarks=torch", "detect.torch_batch_size=8",
                                    "au.accelerator=type:nvidia-tesla-t4;count:1"])
    knowledge = Knowledge.load(config)
    backend = landmark_backend(config, knowledge)
    assert backend.version.startswith("torch-face-landmarker@")
    (step,) = backend.steps
    assert isinstance(step.stage, TorchDetectStage) and step.batch_size == 8
    assert step.accelerator == "type:nvidia-tesla-t4;count:1"  # the face stage asks a runner for the GPU
    auto = load_config(overrides=["detect.landmarks=auto"])
    monkeypatch.setattr(landmarks, "gpu_present", lambda: False)
    assert landmark_backend(auto, knowledge).version.startswith("mediapipe-face-landmarker@")
    monkeypatch.setattr(landmarks, "gpu_present", lambda: True)
    assert landmark_backend(auto, knowledge).version.startswith("torch-face-landmarker@")


def test_auto_on_a_machine_without_a_gpu_plans_mediapipe_without_importing_torch():
    import subprocess
    import sys

    code = ("import sys; from pipeline.builder.backends.landmarks import gpu_present; "
            "print(gpu_present(), 'torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    has_gpu = torch.cuda.is_available()
    assert done.stdout.split() == [str(has_gpu), str(has_gpu)] or has_gpu


@pytest.mark.slow
def test_builds_with_mediapipe_and_torch_give_the_same_faces(wild_dir, tmp_path):
    """Issue 22's check on the shared sample: the whole sample built with each backend (dedup off)."""
    import sys

    from pipeline.cli import main

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from face_agreement import compare

    common = ["build", "--no-progress", "--no-validate", "--source", f"csv:{wild_dir},image_dir=images",
              "--set", "dedup.enabled=false"]
    for backend in ("mediapipe", "torch"):
        assert main([*common, "--set", f"detect.landmarks={backend}", "-o", str(tmp_path / backend)]) == 0
    figures = compare(tmp_path / "mediapipe", tmp_path / "torch")
    assert figures["accepted_difference_share"] <= 0.01
    assert figures["faces_in_both"] >= 0.97 * max(figures["faces"])
    assert figures["landmarks_5_error_iod_mean"] <= 0.01
    assert figures["blendshapes_mae_mean"] <= 0.02
    # An AU within a hair of its threshold can flip on blendshape differences of 1e-4: the sets of a few faces
    # differ by one AU (6 of 184 with the default head of December 2026), the decisions almost never.
    assert figures["au_sets_identical_share"] >= 0.95
    assert figures["aus_differing_per_face"] <= 0.05
