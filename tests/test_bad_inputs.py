"""Nothing lost: one build over a corpus of bad inputs finishes, and every manifest row comes out exactly
once, accepted or rejected with the expected (stage, reason). Also: a broken manifest is a usage error,
and an exception thrown inside a worker for one input becomes that input's `internal_error` reject."""

from __future__ import annotations

import csv
import json
import random
import shutil
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import WILD_SAMPLE, shared_available
from PIL import Image

from pipeline.cli import main
from pipeline.sources.base import SourceError
from pipeline.sources.demo import demo_corpus_dir
from pipeline.stages.align import AlignStage

WILD = WILD_SAMPLE
PROFILE = "Dwarakish_19.jpg"  # yaw about 44 degrees: extreme once align.max_abs_yaw is 30
ACCEPTED = "accepted"
DAMAGED_VIDEO_FRAMES = (0, 30, 60)  # single_face.mp4: 72 frames at 30 fps, sampled at 1 fps


def demo_dir() -> Path:
    try:
        return demo_corpus_dir()
    except SourceError as exc:
        pytest.skip(f"demo corpus unavailable: {exc}")


def png_header(width: int, height: int) -> bytes:
    """A PNG that claims width x height and holds no pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def damaged_video(original: bytes) -> bytes:
    """The same MP4 (index intact, so its frames are listed) with the last two thirds of its media data
    zeroed: the first frame decodes, later ones cannot be read."""
    data = bytearray(original)
    mdat = data.find(b"mdat") - 4
    size = int.from_bytes(data[mdat:mdat + 4], "big")
    start = mdat + 8 + (size - 8) // 3
    data[start:mdat + size] = bytes(mdat + size - start)
    return bytes(data)


@dataclass
class BadCorpus:
    root: Path
    source: str
    # (source_item, frame_index) -> "accepted" or (stage, reason): one per manifest row, one per sampled frame
    expected: dict[tuple[str, int | None], str | tuple[str, str]] = field(default_factory=dict)
    rows: list[dict[str, str]] = field(default_factory=list)

    def add(self, image: str, outcome, emotion: str = "", frames: tuple[int, ...] | None = None) -> None:
        self.rows.append({"image": image, "emotion": emotion})
        if frames is None:
            self.expected[(f"images/{image}" if not image.startswith("..") else image, None)] = outcome
        else:
            for index, frame_outcome in zip(frames, outcome, strict=True):
                self.expected[(f"images/{image}", index)] = frame_outcome

    def row_key(self, outcome) -> None:
        """A row whose reject is keyed by its manifest line (empty cell, repeated image)."""
        self.expected[(f"labels.csv:{len(self.rows) + 2}", None)] = outcome  # line 1: header


@pytest.fixture(scope="module")
def bad_corpus(tmp_path_factory) -> BadCorpus:
    demo = demo_dir()
    root = tmp_path_factory.mktemp("corpora") / "bad"
    images = root / "images"
    (images / "sub dir").mkdir(parents=True)
    corpus = BadCorpus(root, "bad")
    face = Image.open(demo / "single_face.jpg").convert("RGB")  # 572 x 562
    face_bytes = (demo / "single_face.jpg").read_bytes()

    # Good photos in awkward encodings: all accepted.
    (images / "control.jpg").write_bytes(face_bytes)
    corpus.add("control.jpg", ACCEPTED, "happy")
    rgba = face.convert("RGBA")
    alpha = np.asarray(rgba).copy()
    alpha[:40, :, 3] = 0  # a transparent band along the top (no face there)
    alpha[40:80, :, 3] = 128
    Image.fromarray(alpha, "RGBA").save(images / "alpha.png")
    corpus.add("alpha.png", ACCEPTED)
    face.convert("CMYK").save(images / "cmyk.jpg", quality=92)
    corpus.add("cmyk.jpg", ACCEPTED, "happiness")
    bgr16 = cv2.cvtColor(np.asarray(face), cv2.COLOR_RGB2BGR).astype(np.uint16) * 257
    assert cv2.imwrite(str(images / "face16.png"), bgr16)
    corpus.add("face16.png", ACCEPTED)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored lying on its side; upright only once turned 90 degrees clockwise
    face.rotate(90, expand=True).save(images / "rotated_exif.jpg", exif=exif.tobytes(), quality=93)
    corpus.add("rotated_exif.jpg", ACCEPTED)
    shutil.copyfile(demo / "multi_face.jpg", images / "group.jpg")
    corpus.add("group.jpg", ACCEPTED)
    face.save(images / "sub dir" / "visage été 01.jpg", quality=85)
    corpus.add("sub dir/visage été 01.jpg", ACCEPTED, "surprise")

    # Bytes that are not a usable image.
    (images / "truncated.jpg").write_bytes(face_bytes[: len(face_bytes) // 2])
    corpus.add("truncated.jpg", ("decode", "corrupt_image"))
    jfif = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    (images / "corrupt.jpg").write_bytes(jfif + random.Random(0).randbytes(4000))
    corpus.add("corrupt.jpg", ("decode", "corrupt_image"))
    (images / "empty.jpg").write_bytes(b"")
    corpus.add("empty.jpg", ("decode", "empty_file"))
    (images / "notes.jpg").write_text("these are my notes, not a photo\n" * 10)
    corpus.add("notes.jpg", ("decode", "not_an_image"))
    (images / "huge.png").write_bytes(png_header(8000, 8000))  # 64 Mpx > decode.max_pixels (40 Mpx)
    corpus.add("huge.png", ("decode", "too_many_pixels"))
    face.resize((12, 12)).save(images / "tiny.jpg")  # under decode.min_side (16)
    corpus.add("tiny.jpg", ("decode", "too_small"))

    # Images without a usable face.
    shutil.copyfile(demo / "free-mountain-vector-01.jpg", images / "landscape.jpg")
    corpus.add("landscape.jpg", ("detect", "no_face"))
    if shared_available(WILD / "images" / PROFILE):
        shutil.copyfile(WILD / "images" / PROFILE, images / "profile.jpg")
        corpus.add("profile.jpg", ("align", "extreme_pose"))

    # Videos: one whose later frames cannot be read, one that cannot be opened at all.
    video = (demo / "single_face.mp4").read_bytes()
    (images / "clip_damaged.mp4").write_bytes(damaged_video(video))
    corpus.add("clip_damaged.mp4", (ACCEPTED, ("decode", "unreadable_frame"), ("decode", "unreadable_frame")),
               frames=DAMAGED_VIDEO_FRAMES)
    (images / "clip_truncated.mp4").write_bytes(video[: len(video) // 2])
    corpus.add("clip_truncated.mp4", ("read", "unreadable_video"))

    # Manifest rows that are wrong themselves.
    face.save(images / "label.jpg", quality=80)
    corpus.add("label.jpg", ("read", "unknown_label"), "bemused")
    corpus.add("missing.jpg", ("read", "file_not_found"), "happy")
    face.save(root.parent / "outside.jpg")  # a real face, but outside the corpus root
    corpus.add("../../outside.jpg", ("read", "path_outside_root"), "happy")
    corpus.add("n" * 300 + ".jpg", ("read", "file_not_found"))  # longer than a file name may be
    corpus.row_key(("read", "duplicate_row"))
    corpus.rows.append({"image": "control.jpg", "emotion": "sad"})  # listed twice
    corpus.row_key(("read", "missing_path"))
    corpus.rows.append({"image": "", "emotion": "happy"})

    with open(root / "labels.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=["image", "emotion"])
        writer.writeheader()
        writer.writerows(corpus.rows)
    return corpus


def read_folder(folder: Path) -> list[dict]:
    tables = [pq.read_table(f) for f in sorted(folder.glob("*.parquet"))]
    return pa.concat_tables(tables).to_pylist() if tables else []


def build_bad_corpus(corpus: BadCorpus, out: Path, mode: str) -> Path:
    # Dedup off: several bad variants are made from one face, and each must get its own verdict.
    code = main(["build", "--no-progress", "--no-validate", "--running-mode", mode,
                 "--source", f"csv:{corpus.root},image_dir=images", "--set", "align.max_abs_yaw=30",
                 "--set", "dedup.enabled=false", "-o", str(out)])
    assert code == 0
    return out


@pytest.fixture(scope="module")
def bad_build(bad_corpus: BadCorpus, tmp_path_factory) -> Path:
    return build_bad_corpus(bad_corpus, tmp_path_factory.mktemp("bad-build") / "build", "in_memory")


def check_every_row_once(corpus: BadCorpus, out: Path) -> None:
    rows = read_folder(out / "data")
    rejects = read_folder(out / "rejects")
    assert {r["source"] for r in rows + rejects} == {corpus.source}
    accepted = {(r["source_item"], r["frame_index"]) for r in rows}
    rejected = [(r["source_item"], r["frame_index"]) for r in rejects]
    assert len(rejected) == len(set(rejected)), "one reject record per rejected input"
    assert not accepted & set(rejected), "an input is accepted or rejected, never both"
    assert accepted | set(rejected) == set(corpus.expected), "every manifest row, nothing else"

    outcome = {(r["source_item"], r["frame_index"]): (r["stage"], r["reason"]) for r in rejects}
    outcome.update(dict.fromkeys(accepted, ACCEPTED))
    assert outcome == corpus.expected
    assert all(r["detail"] for r in rejects if r["reason"] != "empty_file")

    counts = json.loads((out / "manifest.json").read_text())["counts"]
    assert counts["inputs"] == len(corpus.expected) == counts["accepted_inputs"] + counts["rejected_inputs"]
    assert counts["accepted_inputs"] == len(accepted)
    assert counts["face_rejects_of_accepted_inputs"] == {}


@pytest.mark.slow
def test_every_manifest_row_comes_out_exactly_once(bad_corpus: BadCorpus, bad_build: Path) -> None:
    check_every_row_once(bad_corpus, bad_build)


@pytest.mark.slow
def test_same_accounting_across_worker_processes(bad_corpus: BadCorpus, tmp_path: Path) -> None:
    """The default running mode: elements, rejects and exceptions cross process boundaries."""
    check_every_row_once(bad_corpus, build_bad_corpus(bad_corpus, tmp_path / "build", "multi_processing"))


@pytest.mark.slow
def test_awkward_but_good_photos_are_read_correctly(bad_build: Path) -> None:
    faces = {r["source_item"]: r for r in read_folder(bad_build / "data")}
    rotated = faces["images/rotated_exif.jpg"]
    assert (rotated["source_width"], rotated["source_height"]) == (572, 562)  # upright, as displayed
    eyes_y = (rotated["landmarks_5"][0][1] + rotated["landmarks_5"][1][1]) / 2
    mouth_y = (rotated["landmarks_5"][3][1] + rotated["landmarks_5"][4][1]) / 2
    assert eyes_y < mouth_y, "EXIF orientation applied: the eyes are above the mouth"
    assert faces["images/group.jpg"]["num_faces_detected"] >= 2
    assert faces["images/sub dir/visage été 01.jpg"]["emotion"] == "surprise"
    assert faces["images/cmyk.jpg"]["emotion"] == "happiness"
    for name in ("alpha.png", "face16.png", "control.jpg"):
        assert faces[f"images/{name}"]["source_width"] == 572


@pytest.mark.slow
def test_reject_details_name_the_problem(bad_build: Path) -> None:
    detail = {(r["source_item"], r["frame_index"]): r["detail"] for r in read_folder(bad_build / "rejects")}
    assert "8000x8000" in detail[("images/huge.png", None)]
    assert "JPEG signature" in detail[("images/corrupt.jpg", None)]  # damaged, not some other kind of file
    assert "truncated" in detail[("images/truncated.jpg", None)]
    assert "12x12" in detail[("images/tiny.jpg", None)]
    assert "bemused" in detail[("images/label.jpg", None)]
    if ("images/profile.jpg", None) in detail:
        assert "yaw" in detail[("images/profile.jpg", None)]
    by_reason = {r["reason"]: r["detail"] for r in read_folder(bad_build / "rejects")}
    assert by_reason["duplicate_row"] == "images/control.jpg is already listed on line 2"
    assert by_reason["missing_path"] == "empty image cell"
    assert "File name too long" in detail[("images/" + "n" * 300 + ".jpg", None)]


# ----------------------------------------------------------------------------- a broken manifest


@pytest.mark.parametrize("manifest, why", [
    (b"file,emotion\na.jpg,happy\n", "lacks column(s) image"),
    (b"image,label\na.jpg,happy\n", "lacks column(s) emotion"),
    (b"", "lacks column(s) image, emotion; it has none"),
    ("image,emotion\nvisage été.jpg,happy\n".encode("latin-1"), "not readable UTF-8 CSV"),
    (b'image,emotion\n"' + b"x" * 200_000 + b'",happy\n', "not readable UTF-8 CSV"),
])
def test_unusable_manifest_is_a_usage_error(tmp_path: Path, capsys, manifest: bytes, why: str) -> None:
    root = tmp_path / "corpus"
    (root / "images").mkdir(parents=True)
    (root / "labels.csv").write_bytes(manifest)
    out = tmp_path / "out"
    code = main(["build", "--no-progress", "--no-validate", "--running-mode", "in_memory",
                 "--source", f"csv:{root},image_dir=images", "-o", str(out)])
    err = capsys.readouterr().err
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fea build: ") and why in lines[0], err
    assert not out.exists()


# ----------------------------------------------------------------------------- a fault inside a worker


@pytest.mark.slow
def test_exception_in_a_stage_becomes_that_inputs_reject(tmp_path: Path, monkeypatch) -> None:
    demo = demo_dir()
    root = tmp_path / "corpus"
    (root / "images").mkdir(parents=True)
    face = Image.open(demo / "single_face.jpg").convert("RGB")
    face.save(root / "images" / "a.jpg", quality=90)
    face.save(root / "images" / "b.jpg", quality=85)
    face.save(root / "images" / "c.jpg", quality=80)
    (root / "labels.csv").write_text("image,emotion\na.jpg,happy\nb.jpg,happy\nc.jpg,\n")

    original = AlignStage.run

    def flaky(self, sample):
        if sample.item.source_item == "images/b.jpg":
            raise RuntimeError("injected fault for b.jpg")
        yield from original(self, sample)

    monkeypatch.setattr(AlignStage, "run", flaky)  # in_memory: the DoFn runs in this process
    out = tmp_path / "out"
    assert main(["build", "--no-progress", "--no-validate", "--running-mode", "in_memory",
                 "--source", f"csv:{root},image_dir=images", "--set", "dedup.enabled=false", "-o", str(out)]) == 0

    rejects = read_folder(out / "rejects")
    assert [(r["source_item"], r["stage"], r["reason"]) for r in rejects] == [
        ("images/b.jpg", "align", "internal_error")]
    assert "RuntimeError: injected fault for b.jpg" in rejects[0]["detail"]
    assert {r["source_item"] for r in read_folder(out / "data")} == {"images/a.jpg", "images/c.jpg"}
    manifest = json.loads((out / "manifest.json").read_text())
    counts = manifest["counts"]
    assert (counts["inputs"], counts["accepted_inputs"], counts["rejected_inputs"]) == (3, 2, 1)
    assert counts["rejected_by_reason"] == {"align/internal_error": 1}
    assert manifest["stage_counters"]["align"]["reject.internal_error"] == 1
