"""The torch port of MediaPipe's blendshape network: the TFLite weight reader, the 146-landmark subset,
input forms and batching, and numerical equivalence with the Face Landmarker's own scores on real faces."""

from __future__ import annotations

import importlib.util
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.models.blendshapes_torch import (
    BLENDSHAPES_MEMBER,
    NUM_BLENDSHAPES,
    TorchBlendshapes,
    blendshape_landmark_indices,
    blendshape_names,
    read_blendshape_tflite,
)
from pipeline.models.files import ModelFile, ModelFileError, resolve_model
from pipeline.models.landmarker import FaceLandmarker
from pipeline.models.tflite_weights import TFLiteFormatError, read_tflite_tensors

TOLERANCE = 1e-3  # MediaPipe (XNNPACK, fp32) vs torch; measured ~1.4e-5 on the wild sample
SCOPE = "model_1/GhumMarkerPoserMlpMixerGeneral/"


@pytest.fixture(scope="module")
def tflite_bytes() -> bytes:
    try:
        return read_blendshape_tflite(resolve_model("face_landmarker"))
    except ModelFileError as exc:
        pytest.skip(f"face_landmarker.task unavailable: {exc}")


@pytest.fixture(scope="module")
def torch_blendshapes(tflite_bytes: bytes) -> TorchBlendshapes:
    return TorchBlendshapes(device="cpu")


# --- TFLite reader ------------------------------------------------------------------------------------


def test_reader_reads_every_constant_tensor(tflite_bytes):
    tensors = read_tflite_tensors(tflite_bytes)
    floats = {k: v for k, v in tensors.items() if v.dtype.kind == "f"}
    assert len(tensors) == 62  # of the graph's 245 tensors, 62 are constants (weights, scalars, int32 shapes)
    assert all(v.dtype == np.float32 for v in floats.values())  # fp16 dequantized
    assert tensors[SCOPE + "conv2d/Conv2D"].shape == (96, 1, 1, 146)
    assert tensors[SCOPE + "MLPMixer/input_tokens_embedding/Conv2D"].shape == (64, 1, 1, 2)
    assert tensors[SCOPE + "MLPMixer/MixerBlock_0/mlp_token_mixing/Mlp_1/Conv2D"].shape == (384, 1, 1, 97)
    assert tensors[SCOPE + "MLPMixer/MixerBlock_3/mlp_channel_mixing/Mlp_2/Conv2D"].shape == (64, 1, 1, 256)
    assert tensors[SCOPE + "MLPMixer/AddExtraTokens/strided_slice_1"].shape == (1, 1, 1, 64)
    assert tensors[SCOPE + "output_blendweights/Conv2D"].shape == (52, 1, 1, 64)
    assert tensors[SCOPE + "output_blendweights/BiasAdd/ReadVariableOp"].shape == (52,)
    assert tensors[SCOPE + "MLPMixer/MixerBlock_0/transpose/perm"].tolist() == [0, 1, 3, 2]  # int32 kept
    # Weights (not the two scalars: the input scale 0.5 and the LayerNorm epsilon) add up to the network.
    assert sum(v.size for v in floats.values() if v.size > 1) == 450_520


def test_reader_keeps_fp16_when_asked(tflite_bytes):
    raw = read_tflite_tensors(tflite_bytes, dequantize=False)
    kernel = raw[SCOPE + "conv2d/Conv2D"]
    assert kernel.dtype == np.float16
    widened = read_tflite_tensors(tflite_bytes)[SCOPE + "conv2d/Conv2D"]
    np.testing.assert_array_equal(kernel.astype(np.float32), widened)


def test_reader_refuses_other_bytes():
    with pytest.raises(TFLiteFormatError):
        read_tflite_tensors(b"PK\x03\x04 not a flatbuffer")


def test_bundle_without_blendshape_model_is_a_clear_error(tmp_path):
    bundle = tmp_path / "face_landmarker.task"
    with zipfile.ZipFile(bundle, "w") as archive:
        archive.writestr("face_detector.tflite", b"")
    with pytest.raises(ModelFileError, match=BLENDSHAPES_MEMBER):
        read_blendshape_tflite(ModelFile("face_landmarker", bundle, "0" * 64))
    not_zip = tmp_path / "broken.task"
    not_zip.write_bytes(b"no zip here")
    with pytest.raises(ModelFileError, match="not a .task bundle"):
        read_blendshape_tflite(ModelFile("face_landmarker", not_zip, "0" * 64))


# --- landmark subset, input forms, batching -------------------------------------------------------------


def test_landmark_subset_is_the_one_compiled_into_mediapipe():
    indices = blendshape_landmark_indices()
    assert len(indices) == 146 and list(indices) == sorted(set(indices)) and indices[-1] == 477
    spec = importlib.util.find_spec("mediapipe")
    library = Path(next(iter(spec.submodule_search_locations))) / "tasks" / "c" / "libmediapipe.so"
    if not library.is_file():
        pytest.skip(f"{library} not found")
    needle = np.asarray(indices, dtype="<i4").tobytes()
    assert needle in library.read_bytes(), "schemas/blendshape_landmarks.json differs from mediapipe's constant"


def synthetic_meshes(n: int, seed: int = 0) -> np.ndarray:
    """Face-sized point clouds in pixels: enough to exercise the network deterministically."""
    rng = np.random.default_rng(seed)
    centre = rng.uniform(100, 400, size=(n, 1, 3))
    return (centre + rng.normal(0, 60, size=(n, 478, 3))).astype(np.float32)


def test_batch_of_one_matches_batch_of_32(torch_blendshapes):
    meshes = synthetic_meshes(32)
    batched = torch_blendshapes.predict(meshes)
    one_by_one = np.stack([torch_blendshapes.predict(mesh[None])[0] for mesh in meshes])
    assert batched.shape == (32, NUM_BLENDSHAPES) and batched.dtype == np.float32
    # Not bit-identical: MKL picks GEMM kernels by matrix size, which changes float32 rounding (~1e-6).
    np.testing.assert_allclose(one_by_one, batched, rtol=0, atol=1e-5)
    chunked = TorchBlendshapes(device="cpu", batch_size=7).predict(meshes)
    np.testing.assert_allclose(chunked, batched, rtol=0, atol=1e-5)


def test_input_forms_agree(torch_blendshapes):
    mesh = synthetic_meshes(1, seed=3)[0]
    full = torch_blendshapes.predict(mesh)
    assert full.shape == (NUM_BLENDSHAPES,) and ((full >= 0) & (full <= 1)).all()
    subset = mesh[list(blendshape_landmark_indices()), :2]
    np.testing.assert_allclose(torch_blendshapes.predict(subset), full, atol=1e-6)
    width, height = 640, 480
    normalised = mesh[:, :2] / np.array([width, height], dtype=np.float32)
    np.testing.assert_allclose(torch_blendshapes.predict(normalised, image_size=(width, height)), full, atol=1e-5)
    assert torch_blendshapes.predict(np.zeros((0, 478, 3), np.float32)).shape == (0, NUM_BLENDSHAPES)
    with pytest.raises(ValueError):
        torch_blendshapes.predict(np.zeros((2, 100, 2), np.float32))


def test_device_is_overridable_and_names_are_mediapipes(torch_blendshapes):
    assert torch_blendshapes.device.type == "cpu"
    assert torch_blendshapes.version.startswith("torch-blendshapes@64184e229b26")
    assert len(blendshape_names()) == NUM_BLENDSHAPES and blendshape_names()[0] == "_neutral"


# --- equivalence with MediaPipe ---------------------------------------------------------------------------


def detect_all(landmarker: FaceLandmarker, images: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    meshes, scores = [], []
    for path in images:
        rgb = np.asarray(Image.open(path).convert("RGB"))
        for face in landmarker.detect(rgb):
            meshes.append(face.mesh)
            scores.append(face.blendshapes)
    assert meshes, "no face found"
    return np.stack(meshes), np.stack(scores)


def assert_equivalent(landmarker_stage, torch_blendshapes, images: list[Path], record_property) -> float:
    meshes, mediapipe_scores = detect_all(landmarker_stage.landmarker, images)
    torch_scores = torch_blendshapes.predict(meshes)
    max_diff = float(np.abs(torch_scores - mediapipe_scores).max())
    record_property("faces", len(meshes))
    record_property("max_abs_diff", max_diff)
    print(f"\n{len(images)} images, {len(meshes)} faces: max |torch - mediapipe| = {max_diff:.3g}")
    assert max_diff <= TOLERANCE, f"max abs difference {max_diff:.3g} over {len(meshes)} faces"
    return max_diff


def test_scores_match_mediapipe_on_60_wild_faces(wild_dir, landmarker_stage, torch_blendshapes, record_property):
    images = sorted((wild_dir / "images").iterdir())[:60]
    assert_equivalent(landmarker_stage, torch_blendshapes, images, record_property)


@pytest.mark.slow
def test_scores_match_mediapipe_on_whole_wild_sample(wild_dir, landmarker_stage, torch_blendshapes, record_property):
    images = sorted((wild_dir / "images").iterdir())
    assert len(images) >= 185
    assert_equivalent(landmarker_stage, torch_blendshapes, images, record_property)
