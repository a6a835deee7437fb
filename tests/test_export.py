"""`fea export`: every format against the shards it came from (counts, images, turns), determinism, bad args.

The build is written directly in the record schema (pipeline/io/schema.py) with real JPEG crops, several
shards per split and a face shared by two rows; a slow test exports a real `fea build` of the demo corpus.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from pipeline.cli import main
from pipeline.export import FORMATS, IMAGE_LITERAL, MANIFEST, ExportError, export
from pipeline.io.schema import arrow_schema

ROLE = {"user": "human", "assistant": "gpt", "system": "system"}
# (face, task, emotion, AUs, turns): face 1 answers two tasks; row 3 is multi-turn.
ROWS = [
    (0, "fe_recognition", "happiness", ["AU6", "AU12"], ["What expression is this?", "Happiness."]),
    (1, "au_recognition", "surprise", ["AU1", "AU2"], ["Which AUs are present?", "AU1 and AU2."]),
    (1, "fe_recognition", "surprise", ["AU1", "AU2"], ["What expression is this?", "Surprise."]),
    (2, "description", None, ["AU4"], ["Describe the face.", "Brows lowered (AU4).", "Why?", "AU4 is active."]),
    (3, "fe_recognition", "anger", ["AU4", "AU7"], ["What expression is this?", "Anger."]),
]
SHARDS = {"train": [[0, 1], [2, 3]], "test": [[4]]}  # row indices per shard


def crop(face: int) -> bytes:
    img = Image.new("RGB", (48, 48), (30 * face, 120, 200 - 40 * face))
    img.paste((250, 20 * face, 60), (4 * face, 10, 4 * face + 20, 40))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def record(i: int, split: str) -> dict:
    face, task, emotion, aus, texts = ROWS[i]
    roles = ["user", "assistant"] * (len(texts) // 2)
    turns = [{"role": r, "content": t} for r, t in zip(roles, texts, strict=True)]
    turns[0]["content"] = f"{IMAGE_LITERAL}\n" + turns[0]["content"]
    row = dict.fromkeys(arrow_schema("record").names)
    row.update(sample_id=f"s{i}", face_id=f"face{face}", source="synthetic", source_item=f"item{face}.jpg",
               split=split, frame_index=0, face_index=0, image={"bytes": crop(face), "path": f"face{face}.jpg"},
               emotion=emotion, au_present=aus, task=task, template_id=f"{task}.v1", conversations=turns,
               params_hash="p-test", pipeline_version="0.0", bbox=[0.0, 0.0, 48.0, 48.0],
               landmarks_5=[[10.0, 10.0]] * 5, landmarks_5_aligned=[[10.0, 10.0]] * 5)
    return row


def write_build(out: Path) -> Path:
    (out / "data").mkdir(parents=True)
    for split, shards in SHARDS.items():
        for k, idx in enumerate(shards):
            table = pa.Table.from_pylist([record(i, split) for i in idx], schema=arrow_schema("record"))
            pq.write_table(table, out / "data" / f"{split}-{k:05d}-of-{len(shards):05d}.parquet")
    counts = {"inputs": len(ROWS), "accepted_inputs": len(ROWS), "rejected_inputs": 0, "rows": len(ROWS)}
    (out / "manifest.json").write_text(json.dumps({"schema_version": "1.1.0", "versions": {"params_hash": "p-test"},
                                                   "counts": counts}))
    return out


def source_rows(build: Path, split: str) -> list[dict]:
    files = sorted((build / "data").glob(f"{split}-*.parquet"))
    return pa.concat_tables([pq.read_table(f) for f in files]).to_pylist()


@pytest.fixture(scope="module")
def build(tmp_path_factory) -> Path:
    return write_build(tmp_path_factory.mktemp("exp") / "build")


@pytest.fixture(scope="module")
def exports(build: Path, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("exports")
    out = {}
    for fmt in FORMATS:
        assert main(["export", str(build), "--format", fmt, "--output", str(root / fmt)]) == 0
        out[fmt] = root / fmt
    return out


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def assert_turns(src: dict, turns: list[dict]) -> None:
    """Same roles (mapped) and texts, the image marker once, at the start of the first user turn."""
    assert [(t["from"], t["value"]) for t in turns] == [(ROLE[t["role"]], t["content"]) for t in src["conversations"]]
    assert sum(t["value"].count(IMAGE_LITERAL) for t in turns) == 1
    assert turns[0]["from"] == "human" and turns[0]["value"].startswith(IMAGE_LITERAL + "\n")


def test_counts_match_the_shards(build: Path, exports: dict[str, Path]) -> None:
    for fmt, out in exports.items():
        manifest = json.loads((out / MANIFEST).read_text())
        assert manifest["format"] == fmt
        assert manifest["source_build"]["params_hash"] == "p-test"
        assert manifest["source_build"]["manifest_sha256"] == hashlib.sha256(
            (build / "manifest.json").read_bytes()).hexdigest()
        for split in SHARDS:
            n = len(source_rows(build, split))
            assert manifest["splits"][split]["rows_in_shards"] == manifest["splits"][split]["rows_exported"] == n
        assert not list(out.parent.glob(".*.partial"))


def test_llava(build: Path, exports: dict[str, Path]) -> None:
    out = exports["llava"]
    for split in SHARDS:
        src = source_rows(build, split)
        records = json.loads((out / f"{split}.json").read_text())
        assert [r["id"] for r in records] == [s["sample_id"] for s in src]
        for rec, s in zip(records, src, strict=True):
            assert_turns(s, rec["conversations"])
            assert rec["image"] == f"images/{s['face_id']}.jpg"
            assert (out / rec["image"]).read_bytes() == s["image"]["bytes"]
            Image.open(out / rec["image"]).verify()
            assert rec["metadata"]["emotion"] == s["emotion"] and rec["metadata"]["au_present"] == s["au_present"]
    # one file per face, though face1 answers two rows
    assert json.loads((out / MANIFEST).read_text())["image_files"] == 4
    assert sorted(p.name for p in (out / "images").iterdir()) == [f"face{f}.jpg" for f in range(4)]


def test_sharegpt(build: Path, exports: dict[str, Path]) -> None:
    out = exports["sharegpt"]
    info = json.loads((out / "dataset_info.json").read_text())
    assert info["fea_train"]["formatting"] == "sharegpt" and info["fea_train"]["file_name"] == "train.jsonl"
    for split in SHARDS:
        src = source_rows(build, split)
        records = read_jsonl(out / f"{split}.jsonl")
        assert len(records) == len(src)
        for rec, s in zip(records, src, strict=True):
            assert_turns(s, rec["conversations"])
            assert len(rec["images"]) == 1 and (out / rec["images"][0]).read_bytes() == s["image"]["bytes"]
            assert (rec["sample_id"], rec["task"], rec["split"]) == (s["sample_id"], s["task"], split)


def test_openai(build: Path, exports: dict[str, Path]) -> None:
    out = exports["openai"]
    for split in SHARDS:
        src = source_rows(build, split)
        lines = read_jsonl(out / f"{split}.jsonl")
        meta = read_jsonl(out / f"{split}.metadata.jsonl")
        assert len(lines) == len(meta) == len(src)
        for line, m, s in zip(lines, meta, src, strict=True):
            assert list(line) == ["messages"] and m["sample_id"] == s["sample_id"]
            msgs = line["messages"]
            parts = [p for msg in msgs if isinstance(msg["content"], list) for p in msg["content"]]
            images = [p for p in parts if p["type"] == "image_url"]
            assert len(images) == 1 and msgs[0]["content"][0] is images[0]  # the image stands where <image> stood
            url = images[0]["image_url"]["url"]
            assert url.startswith("data:image/jpeg;base64,")
            jpeg = base64.b64decode(url.split(",", 1)[1])
            assert jpeg == s["image"]["bytes"] and Image.open(io.BytesIO(jpeg)).size == (48, 48)
            texts = [msg["content"][1]["text"] if i == 0 else msg["content"] for i, msg in enumerate(msgs)]
            assert [(m_["role"], t) for m_, t in zip(msgs, texts, strict=True)] == \
                [(t["role"], t["content"].removeprefix(IMAGE_LITERAL + "\n")) for t in s["conversations"]]
            assert IMAGE_LITERAL not in json.dumps(line)


def test_hf_loads_with_datasets(build: Path, exports: dict[str, Path]) -> None:
    import datasets

    out = exports["hf"]
    files = {s: str(out / "data" / f"{s}-00000-of-00001.parquet") for s in SHARDS}
    ds = datasets.load_dataset("parquet", data_files=files)
    for split in SHARDS:
        src = source_rows(build, split)
        assert ds[split].num_rows == len(src)
        assert {"messages", "images", "emotion", "au_present", "task", "sample_id", "source", "split"} <= set(
            ds[split].column_names)
        assert isinstance(ds[split].features["images"].feature, datasets.Image)
        for row, s in zip(ds[split], src, strict=True):
            assert len(row["images"]) == 1 and row["images"][0].size == (48, 48)
            first = row["messages"][0]["content"]
            assert [c["type"] for c in first] == ["image", "text"]
            assert [m["role"] for m in row["messages"]] == [t["role"] for t in s["conversations"]]
            assert row["messages"][-1]["content"][0]["text"] == s["conversations"][-1]["content"]
    raw = pq.read_table(files["train"], columns=["images"]).column("images").to_pylist()
    assert [r[0]["bytes"] for r in raw] == [s["image"]["bytes"] for s in source_rows(build, "train")]


def test_rerun_is_byte_identical(build: Path, exports: dict[str, Path], tmp_path: Path) -> None:
    for fmt, first in exports.items():
        again = export(build, fmt, tmp_path / fmt)
        assert again["splits"]["train"]["rows_exported"] == len(source_rows(build, "train"))
        files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
        assert files == sorted(p.relative_to(tmp_path / fmt) for p in (tmp_path / fmt).rglob("*") if p.is_file())
        for rel in files:
            assert (first / rel).read_bytes() == (tmp_path / fmt / rel).read_bytes(), (fmt, rel)
    # re-exporting over an earlier export replaces it
    assert main(["export", str(build), "-f", "llava", "-o", str(tmp_path / "llava"), "--split", "test"]) == 0
    assert sorted(p.name for p in (tmp_path / "llava").glob("*.json")) == ["export_manifest.json", "test.json"]


def test_split_limit_and_no_images(build: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "x"
    assert main(["export", str(build), "-f", "sharegpt", "-o", str(out), "--split", "train", "--limit", "3",
                 "--images", "none"]) == 0
    assert "train: 3 rows exported (4 in the shards)" in capsys.readouterr().out
    assert len(read_jsonl(out / "train.jsonl")) == 3 and not (out / "test.jsonl").exists()
    assert not (out / "images").exists()


@pytest.mark.parametrize(("argv", "message"), [
    (["--format", "csv"], "invalid choice"),
    (["--format", "llava", "--split", "dev"], "no split(s) ['dev']"),
    (["--format", "openai", "--images", "none"], "embeds the images"),
    (["--format", "llava", "--limit", "0"], "argument --limit: must be at least 1, got 0"),
])
def test_bad_arguments_exit_2(build: Path, tmp_path: Path, capsys, argv: list[str], message: str) -> None:
    code = None
    try:
        code = main(["export", str(build), "-o", str(tmp_path / "o"), *argv])
    except SystemExit as exc:  # argparse's own usage errors
        code = exc.code
    assert code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_a_library_caller_gets_the_limit_checked_too(build: Path, tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="--limit must be a positive number of rows, got 0"):
        export(build, "llava", tmp_path / "o", limit=0)
    assert not (tmp_path / "o").exists()


def test_refuses_to_write_into_or_over_the_build(build: Path, tmp_path: Path, capsys) -> None:
    before = sorted(p.relative_to(build) for p in build.rglob("*"))
    assert main(["export", str(build), "-f", "llava", "-o", str(build / "exports")]) == 2
    assert "overlaps the build" in capsys.readouterr().err
    link = tmp_path / "link"
    link.symlink_to(build)
    assert main(["export", str(build), "-f", "llava", "-o", str(link / "sub")]) == 2
    assert main(["export", str(build), "-f", "llava", "-o", str(build.parent)]) == 2
    other = tmp_path / "notes"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    assert main(["export", str(build), "-f", "llava", "-o", str(other)]) == 2
    assert "not an earlier export" in capsys.readouterr().err
    assert (other / "keep.txt").read_text() == "mine"
    assert sorted(p.relative_to(build) for p in build.rglob("*")) == before


def test_missing_build_exit_3(tmp_path: Path, capsys) -> None:
    assert main(["export", str(tmp_path / "nope"), "-f", "hf", "-o", str(tmp_path / "o")]) == 3
    assert "no manifest.json" in capsys.readouterr().err


def test_a_row_without_the_image_marker_is_refused(tmp_path: Path) -> None:
    build = write_build(tmp_path / "b")
    shard = build / "data" / "test-00000-of-00001.parquet"
    rows = pq.read_table(shard).to_pylist()
    rows[0]["conversations"][0]["content"] = "no image here"
    pq.write_table(pa.Table.from_pylist(rows, schema=arrow_schema("record")), shard)
    with pytest.raises(ExportError, match="starting with '<image>"):
        export(build, "llava", tmp_path / "o")
    assert not (tmp_path / "o").exists() and not (tmp_path / ".o.partial").exists()


@pytest.mark.slow
def test_export_a_real_build(tmp_path: Path, capsys) -> None:
    out = tmp_path / "build"
    assert main(["build", "--no-progress", "--no-validate", "-o", str(out)]) == 0
    rows = json.loads((out / "manifest.json").read_text())["counts"]["rows_by_split"]
    for fmt in FORMATS:
        assert main(["export", str(out), "-f", fmt, "-o", str(tmp_path / fmt)]) == 0
        manifest = json.loads((tmp_path / fmt / MANIFEST).read_text())
        assert {s: c["rows_exported"] for s, c in manifest["splits"].items()} == rows
    records = json.loads((tmp_path / "llava" / "train.json").read_text())
    for rec in records:
        Image.open(tmp_path / "llava" / rec["image"]).verify()
        assert rec["conversations"][0]["value"].startswith(IMAGE_LITERAL + "\n")
