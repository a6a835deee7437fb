"""Duplicate faces: exact copies by content hash, near copies by the source's perceptual hash confirmed by a
second check; distinct faces (the same photo with another expression, mirrored, another photo) kept; one
copy kept in a deterministic order, the others rejected naming it; frames of one clip never compared."""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.portability.fn_api_runner.fn_runner import FnApiRunner
from apache_beam.testing.util import assert_that
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from pipeline.cli import main
from pipeline.config import DedupConfig, load_config
from pipeline.domain.record import Sample, SourceItem
from pipeline.sources.demo import demo_corpus_dir
from pipeline.stages.base import REJECTS
from pipeline.stages.dedup import EXACT, NEAR, Deduplicate, Face, Pair, bands, decide, same_photo, sample_key
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


# --- pairs and decisions: the Beam transform on fingerprinted samples ------------------------------------


def sample(source: str, item: str, fp, frame: int | None = None, face_index: int = 0, sha: str = "") -> Sample:
    return Sample(SourceItem(source, item, item, frame_index=frame), image_sha256=sha or f"{source}/{item}",
                  face_index=face_index, fingerprint=fp)


def dedup(samples: list[Sample], expected_rejects: dict[tuple, tuple[str, tuple]], sources=("first", "second"),
          cfg: DedupConfig = CFG) -> None:
    """Run Deduplicate in Beam (in-memory FnApiRunner) and check its output: the rejects, as sample key ->
    (reason, kept twin's sample key), and the kept samples."""
    ids = {sample_key(s): s.face_id for s in samples}
    face_index = {s.face_id: sample_key(s) for s in samples}
    want = {key: (reason, ids[twin]) for key, (reason, twin) in expected_rejects.items()}
    kept = sorted(set(ids) - set(want))

    def check_rejects(rejects: list) -> None:
        got = {}
        for r in rejects:
            assert r.stage == "dedup" and r.detail, r
            key = next(k for k in ids if k[:3] == (r.source, r.source_item, -1 if r.frame_index is None
                                                   else r.frame_index) and k not in got)
            got[key] = (r.reason, r.duplicate_of)
        assert got == want, {k: (v[0], face_index.get(v[1])) for k, v in got.items()}

    def check_kept(survivors: list) -> None:
        assert sorted(sample_key(s) for s in survivors) == kept
        assert all(s.fingerprint is None for s in survivors), "fingerprints are dropped once judged"

    options = PipelineOptions(["--direct_running_mode=in_memory", "--direct_num_workers=1"])
    with beam.Pipeline(runner=FnApiRunner(), options=options) as p:
        out = p | beam.Create(samples, reshuffle=False) | Deduplicate(cfg, list(sources))
        assert_that(out[REJECTS], check_rejects, label="rejects")
        assert_that(out.ok, check_kept, label="kept")


def test_a_copy_in_a_later_source_is_rejected_naming_the_first(photos, fingerprint_of) -> None:
    name, rgb, _ = photos[0]
    original, copy = fingerprint_of(rgb), fingerprint_of(derived.decode(derived.altered_copy(rgb)))
    dedup([sample("second", name, copy), sample("first", name, original)],
          {("second", name, -1, 0): (NEAR, ("first", name, -1, 0))})


def test_another_expression_of_the_same_photo_is_kept(photos, fingerprint_of) -> None:
    """Only the pairs whose hashes are close enough to be candidates test the second check in the transform."""
    samples = []
    for name, rgb, mesh in photos:
        original = fingerprint_of(rgb)
        for kind in derived.WARP_KINDS:
            warped = fingerprint_of(derived.decode(derived.jpeg(derived.expression_warp(rgb, mesh, kind, 0.05), 95)))
            if (original.phash ^ warped.phash).bit_count() <= RADIUS:
                samples += [sample("first", name, original), sample("second", f"{kind}_{name}", warped)]
    assert len(samples) >= 4, "too few candidate pairs: the test tests nothing"
    dedup(list({sample_key(s): s for s in samples}.values()), {})


def test_faces_of_one_photo_or_one_clip_are_never_compared(photos, fingerprint_of) -> None:
    fp = fingerprint_of(photos[0][1])
    frames = [sample("first", "clip.mp4", fp, frame=i, sha=f"frame{i % 2}") for i in range(3)]  # a still clip
    dedup(frames, {})
    # Another input with the same face: each frame is its copy (the clip's rule binds only its own frames).
    photo = sample("first", "a_still.jpg", fp, sha="still")
    dedup([*frames, photo], {("first", "clip.mp4", i, 0): (NEAR, ("first", "a_still.jpg", -1, 0)) for i in range(3)})
    faces_of_one_photo = [sample("first", "group.jpg", fp, face_index=i, sha="g") for i in range(2)]
    dedup(faces_of_one_photo, {})


def test_exact_copies_are_the_same_bytes_and_the_same_face(photos, fingerprint_of) -> None:
    fp = fingerprint_of(photos[0][1])
    faces = [sample(source, item, fp, face_index=i, sha="same bytes")
             for source, item in (("second", "y.jpg"), ("first", "x.jpg")) for i in range(2)]
    dedup(faces, {("second", "y.jpg", -1, i): (EXACT, ("first", "x.jpg", -1, i)) for i in range(2)})


def test_decisions_keep_the_earliest_and_name_a_kept_twin() -> None:
    a, b, c, d = (Face((0, "s", name, -1, 0), f"id-{name}", name) for name in "abcd")
    pairs = [Pair(a, b, NEAR, "b~a"), Pair(b, c, NEAR, "c~b"), Pair(a, d, NEAR, "d~a"), Pair(c, d, EXACT, "d=c")]
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
