"""Appearance features of the AU head: the crop's gradient descriptor through a 48 px bottleneck, its learned
projection, and a head that carries one (written, read back, applied)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from conftest import SCHEMAS, only, run_stage
from PIL import Image

from pipeline.au.appearance import DESCRIPTOR, LENGTH, Appearance, descriptor
from pipeline.au.head import AUHead, HeadError
from pipeline.domain.vocabulary import load_au_vocabulary

CODES = [row["code"] for row in load_au_vocabulary(SCHEMAS / "au_vocabulary.csv")]


@pytest.fixture
def crops(make_detect, make_align, demo_sample) -> list[bytes]:
    """Aligned crops (JPEG, 336 px) of real demo faces."""
    out = []
    for name in ("0-f15-hao-ph.jpg", "0-f1-su-ph.jpg", "15-f13-anc-ph.jpg", "45-m7-di-ph.jpg"):
        face = only(run_stage(make_detect(), demo_sample(name)))
        out.append(only(run_stage(make_align(), face)).crop_jpeg)
    return out


def resaved_small(jpeg: bytes, side: int) -> bytes:
    """The crop as a low-resolution corpus would hold it: reduced to `side` px, grey, blown back up."""
    image = Image.open(io.BytesIO(jpeg)).convert("L").resize((side, side), Image.BOX).resize((336, 336))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=95)
    return buffer.getvalue()


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def test_descriptor_is_a_fixed_length_function_of_the_crop(crops):
    first = descriptor(crops[0])
    assert first.shape == (LENGTH,) and first.dtype == np.float32 and np.isfinite(first).all()
    assert np.array_equal(first, descriptor(crops[0]))
    assert not np.array_equal(first, descriptor(crops[1]))


def test_the_48px_bottleneck_makes_small_grey_crops_look_like_sharp_ones(crops):
    """A face reduced to 48 px and grey (a CK+48- or FER-like crop) keeps nearly the descriptor of its sharp
    colour original: closer to it than any other face's."""
    for i, crop in enumerate(crops):
        small = descriptor(resaved_small(crop, 48))
        same = cosine(small, descriptor(crop))
        others = [cosine(small, descriptor(other)) for j, other in enumerate(crops) if j != i]
        assert same > 0.9 and same > max(others)


def test_projection_is_learned_without_labels_reproducibly(crops):
    descriptors = np.stack([descriptor(c) for c in crops] + [descriptor(resaved_small(c, 64)) for c in crops])
    appearance = Appearance.learn(descriptors, 3)
    assert appearance.axes.shape == (3, LENGTH) and appearance.names == ["app:pc1", "app:pc2", "app:pc3"]
    assert np.allclose(appearance.axes @ appearance.axes.T, np.eye(3), atol=1e-4)
    again = Appearance.learn(descriptors[::-1].copy(), 3)  # same faces in another order: the same axes
    assert np.allclose(again.axes, appearance.axes, atol=1e-4)
    projected = appearance.project(descriptors)
    assert projected.shape == (8, 3) and abs(projected.mean(axis=0)).max() < 1e-3
    back = Appearance.from_dict(appearance.to_dict())
    assert np.allclose(back.project(descriptors), projected, atol=1e-3)
    with pytest.raises(ValueError, match=DESCRIPTOR):
        Appearance.from_dict({**appearance.to_dict(), "descriptor": "hog96-v0"})


def test_a_head_with_appearance_reads_the_crop_and_round_trips(crops, tmp_path):
    head = AUHead.load(SCHEMAS / "au_head.json", CODES)
    assert head.appearance is not None and any(f.startswith("app:pc") for f in head.features)
    path = head.write(tmp_path / "head.json")
    again = AUHead.load(path, CODES)
    assert again.content_version() == head.content_version() and again.tag == head.tag
    base = np.zeros(10)
    with pytest.raises(HeadError, match="appearance"):
        head.inputs(base)
    one = head.inputs(base, crops[0])
    assert one.shape == (10 + len(head.appearance.axes),) and np.array_equal(one[:10], base)
    many = head.inputs(np.zeros((2, 10)), [crops[0], crops[1]])
    assert np.allclose(many[0], one, atol=1e-5)
