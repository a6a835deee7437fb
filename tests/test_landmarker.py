"""The Face Landmarker wrapper reads MediaPipe's C results with numpy: the same faces, meshes,
blendshapes and poses as MediaPipe's public API, and the public path when the structs differ."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.models import landmarker as lm
from pipeline.models.landmarker import FaceLandmarker


@pytest.fixture(scope="module")
def images(wild_dir: Path) -> list[np.ndarray]:
    paths = sorted((wild_dir / "images").iterdir())[:40]
    return [np.asarray(Image.open(p).convert("RGB")) for p in paths]


@pytest.fixture(scope="module")
def both() -> tuple[FaceLandmarker, FaceLandmarker]:
    fast, public = FaceLandmarker(), FaceLandmarker(fast_results=False)
    yield fast, public
    fast.close()
    public.close()


def test_numpy_results_equal_the_public_api(both, images) -> None:
    fast, public = both
    assert fast._raw is not None and public._raw is None
    faces = 0
    for rgb in images:
        a, b = fast.detect(rgb), public.detect(rgb)
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            faces += 1
            assert x.mesh.dtype == y.mesh.dtype == np.float32 and x.mesh.shape == y.mesh.shape == (478, 3)
            np.testing.assert_array_equal(x.mesh, y.mesh)
            np.testing.assert_array_equal(x.blendshapes, y.blendshapes)
            assert x.pose == y.pose
    assert faces >= 30  # most of the sample's photos hold a face
    assert fast.blendshape_names == public.blendshape_names and len(fast.blendshape_names) == 52


def test_results_outlive_the_freed_c_struct(both, images) -> None:
    """Arrays are copied before MediaPipe frees its result: a later detection does not change them."""
    fast, _ = both
    first = fast.detect(images[0])
    kept = [f.mesh.copy() for f in first]
    for rgb in images[1:5]:
        fast.detect(rgb)
    for face, mesh in zip(first, kept, strict=True):
        np.testing.assert_array_equal(face.mesh, mesh)


def test_structs_that_differ_fall_back_to_the_public_api(monkeypatch, images, caplog) -> None:
    def broken(*_args, **_kwargs):
        raise TypeError("MpNormalizedLandmarkC.x is not a float")

    monkeypatch.setattr(lm, "_struct_dtype", broken)
    with caplog.at_level("WARNING"):
        landmarker = FaceLandmarker()
    try:
        assert landmarker._raw is None
        assert "slower public API" in caplog.text
        faces = landmarker.detect(images[0])
        assert faces and faces[0].mesh.shape == (478, 3)
    finally:
        landmarker.close()
