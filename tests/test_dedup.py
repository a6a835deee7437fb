"""Duplicate faces: exact copies by content hash, near copies by the source's perceptual hash confirmed by a
second check; distinct faces (the same photo with another expression, mirrored, another photo) kept; one
copy kept in a deterministic order, the others rejected naming it; frames of one clip never compared."""

from __future__ import annotations

import json
import random
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from pipeline.cli import main
from pipeline.config import DedupConfig, load_config
from pipeline.sources.demo import demo_corpus_dir
from pipeline.stages.dedup import (
    EXACT,
    NEAR,
    Face,
    Pair,
    PairFaces,
    bands,
    candidate_keys,
    decide,
    face_of,
    face_record,
    same_photo,
)
from pipeline.stages.fingerprint import fingerprint, perceptual_hash

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks import derived  # noqa: E402

CFG = DedupConfig()
RADIUS = CFG.max_hash_distance


@pytest.fixture(scope="module")
def photos(wild_dir: Path, landmarker_stage) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, rgb, mesh) of 12 sample photos with a face, of 12 different people."""
    out, people = [], set()
    for path in sorted((wild_dir / "images").iterdir()):
        person = path.stem.rsplit("_", 1)[0]
        rgb = np.asarray(Image.open(path).convert("RGB"))
        faces = landmarker_stage.landmarker.detect(rgb) if person not in people else []
        if faces:
            out.append((path.name, rgb, faces[0].mesh))
            people.add(person)
        if len(out) == 12:
            return out
    pytest.skip("fewer than 12 sample photos with a face")


@pytest.fixture
def fingerprint_of(landmarker_stage):
    def fp(rgb: np.ndarray):
        faces, _ = landmarker_stage.find_faces(rgb)
        assert faces, "no face found"
        return fingerprint(rgb, faces[0].mesh, CFG)

    return fp


# --- candidates: the hash and its bands ----------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**CFG.hash_bits - 1), st.sets(st.integers(0, CFG.hash_bits - 1), max_size=RADIUS))
def test_hashes_within_the_radius_share_a_band(phash: int, flips: set[int]) -> None:
    other = phash
    for bit in flips:
        other ^= 1 << bit
    count = RADIUS + 1
    assert any(a == b for a, b in zip(bands(phash, CFG.hash_bits, count), bands(other, CFG.hash_bits, count),
                                      strict=True))


def test_one_more_bit_can_separate_every_band() -> None:
    """The radius is the most the bands guarantee: a flip in each band leaves none in common."""
    count = RADIUS + 1
    phash = random.Random(0).getrandbits(CFG.hash_bits)
    other = phash
    for band in range(count):  # bit i (counted from the least significant of the packed hash) is in band ...
        other ^= 1 << (CFG.hash_bits - 1 - band)  # ... the hash's first bits go to bands 0, 1, 2, ... in turn
    assert (phash ^ other).bit_count() == count
    assert not any(a == b for a, b in zip(bands(phash, CFG.hash_bits, count), bands(other, CFG.hash_bits, count),
                                          strict=True))


def test_hash_survives_an_altered_copy_but_not_another_photo(photos) -> None:
    hashes = [perceptual_hash(rgb, CFG.hash_bits) for _, rgb, _ in photos]
    for (name, rgb, _), phash in zip(photos, hashes, strict=True):
        copy = perceptual_hash(derived.decode(derived.altered_copy(rgb)), CFG.hash_bits)
        assert (phash ^ copy).bit_count() <= RADIUS, name
    distances = [(a ^ b).bit_count() for i, a in enumerate(hashes) for b in hashes[i + 1:]]
    assert min(distances) > 2 * RADIUS


# --- the second check ------------------------------------------------------------------------------------


def test_second_check_confirms_altered_copies(photos, fingerprint_of) -> None:
    for name, rgb, _ in photos:
        original = fingerprint_of(rgb)
        for copy in (derived.altered_copy(rgb), derived.jpeg(rgb, 50)):
            ok, residual, why = same_photo(original, fingerprint_of(derived.decode(copy)), CFG.check)
            assert ok, f"{name}: {why}"


def test_second_check_keeps_another_expression_of_the_same_photo(photos, fingerprint_of) -> None:
    """Same person, background, light and camera; only the mouth or the brows moved (by 10% of the distance
    between the eyes): what a posed corpus' different expressions of one subject look like, and harder."""
    for name, rgb, mesh in photos:
        original = fingerprint_of(rgb)
        for kind in derived.WARP_KINDS:
            warped = derived.decode(derived.jpeg(derived.expression_warp(rgb, mesh, kind, 0.1), 95))
            ok, residual, why = same_photo(original, fingerprint_of(warped), CFG.check)
            assert not ok, f"{name} {kind}: {why}"
        assert not same_photo(original, fingerprint_of(derived.mirror(rgb)), CFG.check)[0], name


def test_second_check_at_48px(photos, fingerprint_of) -> None:
    """Small images: an altered copy still matches (most of the time, docs/dedup.md), another expression never."""
    matched = 0
    for name, rgb, mesh in photos:
        small = fingerprint_of(derived.shrink(rgb, 48))
        assert small.detail < 1.5
        matched += same_photo(small, fingerprint_of(derived.decode(derived.altered_copy(derived.shrink(rgb, 48)))),
                              CFG.check)[0]
        for kind in derived.WARP_KINDS:
            warped = fingerprint_of(derived.shrink(derived.expression_warp(rgb, mesh, kind, 0.1), 48))
            assert not same_photo(small, warped, CFG.check)[0], f"{name} {kind}"
    assert matched >= len(photos) - 1


# --- pairs and decisions --------------------------------------------------------------------------------


def face(source: str, item: str, fp, frame: int = -1, face_index: int = 0, rank: int = 0, sha: str = "") -> Face:
    return Face((rank, source, item, frame, face_index), f"{source}/{item}/{frame}/{face_index}", sha or item, fp)


def judge(faces: list[Face], cfg: DedupConfig = CFG) -> list[Pair]:
    """The candidate groups and PairFaces, as the Beam transform runs them (a GroupByKey by hand)."""
    groups = defaultdict(list)
    for f in faces:
        for key, member in candidate_keys(face_record(f), cfg):
            groups[key].append(member)
    step = PairFaces(cfg)
    step.setup()
    return [pair for key, members in groups.items() for pair in step.process((key, members))]


def test_a_face_travels_as_plain_values(photos, fingerprint_of) -> None:
    f = face("s", photos[0][0], fingerprint_of(photos[0][1]))
    record = face_record(f)
    assert all(isinstance(v, (tuple, str, bytes, float, int)) for v in record)
    back = face_of(record)
    assert back.order == f.order and back.fingerprint.phash == f.fingerprint.phash
    assert np.array_equal(back.fingerprint.thumb, f.fingerprint.thumb) and back.fingerprint.box == f.fingerprint.box


def test_a_copy_is_judged_once_and_names_the_earlier_source(photos, fingerprint_of) -> None:
    name, rgb, _ = photos[0]
    original, copy = fingerprint_of(rgb), fingerprint_of(derived.decode(derived.altered_copy(rgb)))
    pairs = judge([face("second", name, copy, rank=1, sha="b"), face("first", name, original, rank=0, sha="a")])
    assert len(pairs) == 1, "the pair shares several bands but must be judged once"
    pair = pairs[0]
    assert (pair.reason, pair.earlier.key[0], pair.later.key[0]) == (NEAR, "first", "second")
    assert pair.later.fingerprint is None, "pairs carry no thumbnails"


def test_faces_of_one_photo_or_one_clip_are_never_paired(photos, fingerprint_of) -> None:
    name, rgb, _ = photos[0]
    fp = fingerprint_of(rgb)
    frames = [face("demo", "clip.mp4", fp, frame=i, sha=f"frame{i}") for i in range(3)]
    same_frame_again = face("demo", "clip.mp4", fp, frame=3, sha="frame0")  # a still clip: equal frames
    faces_of_one_photo = [face("demo", name, fp, face_index=i) for i in range(2)]
    assert judge([*frames, same_frame_again]) == [] and judge(faces_of_one_photo) == []
    # The same frame in another clip is a copy (exact: same pixels).
    other_clip = face("other", "clip.mp4", fp, frame=0, sha="frame0", rank=1)
    assert [(p.reason, p.later.key[0]) for p in judge([frames[0], other_clip])] == [(EXACT, "other")]


def test_exact_copies_are_the_same_bytes_and_the_same_face(photos, fingerprint_of) -> None:
    fp = fingerprint_of(photos[0][1])
    a0, a1 = face("a", "x.jpg", fp, sha="s"), face("a", "x.jpg", fp, face_index=1, sha="s")
    b0, b1 = face("b", "y.jpg", fp, sha="s", rank=1), face("b", "y.jpg", fp, face_index=1, sha="s", rank=1)
    pairs = judge([b1, a0, b0, a1])
    assert sorted((p.earlier.key, p.later.key) for p in pairs) == [
        (("a", "x.jpg", -1, 0), ("b", "y.jpg", -1, 0)), (("a", "x.jpg", -1, 1), ("b", "y.jpg", -1, 1))]
    assert {p.reason for p in pairs} == {EXACT}


def test_decisions_keep_the_earliest_and_name_a_kept_twin() -> None:
    a, b, c, d = (face("s", name, None, rank=0) for name in "abcd")
    pairs = [Pair(a.bare(), b.bare(), NEAR, "b~a"), Pair(b.bare(), c.bare(), NEAR, "c~b"),
             Pair(a.bare(), d.bare(), NEAR, "d~a"), Pair(c.bare(), d.bare(), EXACT, "d=c")]
    expected = {b.key: (NEAR, "b~a", a.face_id), d.key: (NEAR, "d~a", a.face_id)}
    for _ in range(5):  # whatever order the pairs arrive in
        random.shuffle(pairs)
        assert decide(pairs) == expected  # c is a copy of b only, which goes: c stays


# --- end to end ------------------------------------------------------------------------------------------


def rows_and_rejects(out: Path) -> tuple[list[dict], list[dict]]:
    read = lambda folder, columns=None: pa.concat_tables(  # noqa: E731
        pq.read_table(f, columns=columns) for f in sorted((out / folder).glob("*.parquet"))).to_pylist()
    return read("data", ["source", "source_item", "frame_index", "face_id", "low_resolution"]), read("rejects")


@pytest.mark.slow
def test_two_corpora_in_one_build(photos, tmp_path: Path) -> None:
    """First corpus: 8 photos and a clip sampled at 10 fps. Second: altered copies of 3 of the photos, a byte
    copy of one, another expression of one, 2 photos new to the build and 48 px grey crops of 2 more."""
    first = derived.write_corpus(tmp_path / "first", ((n, rgb, "neutral") for n, rgb, _ in photos[:8]))
    clip = first / "images" / "clip.mp4"
    clip.write_bytes((demo_corpus_dir() / "single_face.mp4").read_bytes())
    with open(first / "labels.csv", "a") as fh:
        fh.write("clip.mp4,neutral\n")
    name, rgb, mesh = photos[4]
    derived.write_corpus(tmp_path / "second", [
        *((f"copy_{n}", derived.altered_copy(rgb), "neutral") for n, rgb, _ in photos[:3]),
        ("bytes.jpg", (first / "images" / photos[3][0]).read_bytes(), "neutral"),
        ("smile.jpg", derived.expression_warp(rgb, mesh, "smile", 0.15), "happiness"),
        *((f"new_{n}", rgb, "neutral") for n, rgb, _ in photos[8:10]),
        *((f"fer_{n}.png", derived.fer_crop(rgb, mesh), "neutral") for n, rgb, mesh in photos[10:12]),
    ])
    out = tmp_path / "out"
    assert main(["build", "--no-progress", "--no-validate", "--running-mode", "in_memory", "-o", str(out),
                 "--source", f"csv:{first},image_dir=images,video_fps=10,max_frames_per_video=8",
                 "--source", f"csv:{tmp_path / 'second'},image_dir=images"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    counts = manifest["counts"]
    assert counts["inputs"] == 8 + 8 + 9 == counts["accepted_inputs"] + counts["rejected_inputs"]
    rows, rejects = rows_and_rejects(out)
    kept = {(r["source"], Path(r["source_item"]).name): r["face_id"] for r in rows}
    dups = {Path(r["source_item"]).name: r for r in rejects if r["stage"] == "dedup"}
    assert set(dups) == {f"copy_{n}" for n, _, _ in photos[:3]} | {"bytes.jpg"}, dups
    for n, _, _ in photos[:3]:
        assert dups[f"copy_{n}"]["reason"] == NEAR and dups[f"copy_{n}"]["duplicate_of"] == kept[("first", n)]
    assert dups["bytes.jpg"]["reason"] == EXACT
    assert dups["bytes.jpg"]["duplicate_of"] == kept[("first", photos[3][0])]
    fer = {f"fer_{n}.png" for n, _, _ in photos[10:]}
    for accepted in ("smile.jpg", *(f"new_{n}" for n, _, _ in photos[8:10]), *fer):
        assert ("second", accepted) in kept, f"{accepted} was lost"
    frames = {r["frame_index"] for r in rows if r["source_item"].endswith("clip.mp4")}
    assert len(frames) == 8, "every frame of the clip is kept"
    low = {Path(r["source_item"]).name for r in rows if r["low_resolution"]}
    assert fer <= low and counts["faces_low_resolution"] == len({r["face_id"] for r in rows if r["low_resolution"]})
    assert sum(counts["faces_by_detect_attempt"].values()) == counts["faces"]
    assert f"**{counts['faces_low_resolution']} of {counts['faces']} faces" in (out / "README.md").read_text()
    assert manifest["stage_counters"]["dedup"]["pairs.confirmed"] == 3


@pytest.mark.slow
def test_the_same_corpus_twice_keeps_one_copy(wild_dir: Path, tmp_path: Path) -> None:
    sources = [{"name": name, "kind": "csv", "path": str(wild_dir), "options": {"image_dir": "images"}, "limit": 8}
               for name in ("first", "second")]
    out = tmp_path / "out"
    assert main(["build", "--no-progress", "--no-validate", "--running-mode", "in_memory",
                 "--set", "sources=" + json.dumps(sources), "-o", str(out)]) == 0
    counts = json.loads((out / "manifest.json").read_text())["counts"]
    assert counts["inputs"] == 16 and counts["inputs"] == counts["accepted_inputs"] + counts["rejected_inputs"]
    rows, rejects = rows_and_rejects(out)
    assert {r["source"] for r in rows} == {"first"}
    kept = {r["face_id"] for r in rows}
    dups = [r for r in rejects if r["stage"] == "dedup"]
    assert len(dups) == len(kept) and all(r["source"] == "second" and r["duplicate_of"] in kept
                                          and r["reason"] == EXACT for r in dups)


def test_params_default_to_the_documented_dedup() -> None:
    assert load_config().dedup == DedupConfig()
