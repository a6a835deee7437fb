"""End to end: `fea build` on the demo corpus and the shared sample corpus, read back with `datasets`."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from conftest import WILD_SAMPLE, require_shared

from pipeline.cli import main
from pipeline.grounding import disagreements
from pipeline.io.schema import arrow_schema
from pipeline.knowledge import packaged_emotions

SHARED = WILD_SAMPLE
AU_CODE = re.compile(r"\bAU(\d+)\b")
# Task families whose answers name nothing but the labels (the others also deny absent AUs or other emotions).
LABEL_ONLY_TASKS = {"fe_recognition", "fe_multiple_choice", "au_recognition", "au_intensity", "au_to_fe_reasoning",
                    "description", "multi_turn"}

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo_build(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("demo") / "build"
    assert main(["build", "--no-progress", "-o", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def shared_build(tmp_path_factory) -> Path:
    require_shared(SHARED)
    out = tmp_path_factory.mktemp("fitw") / "build"
    spec = f"csv:{SHARED},image_dir=images,subject_pattern=^(.+)_\\d+$"
    assert main(["build", "--no-progress", "--source", spec, "-o", str(out)]) == 0
    return out


def read_rows(out: Path, columns: list[str] | None = None):
    import pyarrow as pa

    return pa.concat_tables([pq.read_table(f, columns=columns) for f in sorted((out / "data").glob("*.parquet"))])


def check_invariants(out: Path) -> dict:
    manifest = json.loads((out / "manifest.json").read_text())
    counts = manifest["counts"]
    assert counts["inputs"] == counts["accepted_inputs"] + counts["rejected_inputs"]
    assert sum(counts["rejected_by_reason"].values()) == counts["rejected_inputs"]
    rejects = read_rejects(out)
    assert rejects.num_rows >= counts["rejected_inputs"]
    assert all(rejects.column("reason").to_pylist()) and all(rejects.column("stage").to_pylist())

    # The schema on disk is exactly the declared one (never inferred from data).
    for shard in (out / "data").glob("*.parquet"):
        schema = pq.read_schema(shard)
        assert schema.equals(arrow_schema("record"), check_metadata=False)
        assert schema.metadata[b"fea_schema_version"] == arrow_schema("record").metadata[b"fea_schema_version"]
        assert pq.ParquetFile(shard).metadata.row_group(0).column(0).compression == "ZSTD"

    table = read_rows(out, ["sample_id", "emotion", "au_present", "conversations", "task", "source_item",
                            "fe_au_conflict"])
    rows = table.to_pylist()
    assert len(rows) == counts["rows"] > 0
    assert len({r["sample_id"] for r in rows}) == len(rows)
    vocabulary = set(manifest["au_vocabulary"])
    for row in rows:
        turns = row["conversations"]
        text = " ".join(t["content"] for t in turns)
        assert text.count("<image>") == 1 and turns[0]["content"].startswith("<image>")
        assert [t["role"] for t in turns] == ["user", "assistant"] * (len(turns) // 2)
        assert all(t["content"].strip() for t in turns)
        assert set(row["au_present"]) <= vocabulary
        answers = " ".join(t["content"] for t in turns if t["role"] == "assistant").lower()
        # Answers agree with labels (the validation's verifier), and, for the families that only ever name
        # the labels, also by plain word search: every AU named is present, no emotion but the label.
        assert not disagreements(answers, row["emotion"], list(row["au_present"]), row["task"]), answers
        if row["task"] in LABEL_ONLY_TASKS:
            named = {f"AU{n}" for n in AU_CODE.findall(answers.upper())}
            assert named <= set(row["au_present"]), (row["source_item"], named, row["au_present"])
            others = [e for e in packaged_emotions().canonical if e != row["emotion"]]
            assert not [e for e in others if re.search(rf"\b{e}\b", answers)], (row["task"], answers)
        if row["task"] in ("fe_recognition", "fe_multiple_choice"):
            assert row["emotion"] in answers
        if row["task"] == "mixed_cues":
            assert row["fe_au_conflict"]
    return manifest


def read_rejects(out: Path):
    import pyarrow as pa

    return pa.concat_tables([pq.read_table(f) for f in sorted((out / "rejects").glob("*.parquet"))])


def test_demo_build_invariants(demo_build: Path) -> None:
    manifest = check_invariants(demo_build)
    assert manifest["counts"]["accepted_inputs"] >= 10
    assert "detect/no_face" in manifest["counts"]["rejected_by_reason"]  # the landscape and no-face video
    assert (demo_build / "validation" / "result.json").is_file()


def test_shared_corpus_accepts_at_least_90_percent(shared_build: Path) -> None:
    manifest = check_invariants(shared_build)
    counts = manifest["counts"]
    assert counts["inputs"] == 185
    assert counts["accepted_inputs"] / counts["inputs"] >= 0.9
    assert set(counts["rows_by_emotion"]) == set(packaged_emotions().canonical)


def test_datasets_loads_decoded_images(shared_build: Path) -> None:
    import datasets
    from PIL import Image

    ds = datasets.load_dataset("parquet", data_dir=str(shared_build / "data"))
    assert set(ds) == {"train", "test"}
    row = ds["train"][0]
    assert isinstance(row["image"], Image.Image)
    assert row["image"].size == (336, 336)
    assert isinstance(row["conversations"], list) and row["conversations"][0]["role"] == "user"


def test_splits_are_subject_disjoint(shared_build: Path) -> None:
    table = read_rows(shared_build, ["subject_id", "split"]).to_pylist()
    splits_of: dict[str, set] = {}
    for row in table:
        splits_of.setdefault(row["subject_id"], set()).add(row["split"])
    assert all(len(s) == 1 for s in splits_of.values())


def test_rebuild_is_identical(demo_build: Path, tmp_path: Path) -> None:
    """Same rows from another running mode; an in-process build leaves the caller's
    thread on all its cores (the face model is pinned to one core only while the build runs)."""
    again = tmp_path / "again"
    cores = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    assert main(["build", "--no-progress", "--no-validate", "--running-mode", "in_memory", "-o", str(again)]) == 0
    cols = ["sample_id", "task", "template_id", "conversations", "au_intensity", "split"]

    def rows(out):
        return sorted(read_rows(out, cols).to_pylist(), key=lambda r: r["sample_id"])

    assert rows(again) == rows(demo_build)
    if cores is not None:
        assert os.sched_getaffinity(0) == cores


def test_new_seed_changes_the_mix(demo_build: Path, tmp_path: Path) -> None:
    other = tmp_path / "seed1"
    assert main(["build", "--no-progress", "--no-validate", "--running-mode", "in_memory",
                 "--set", "render.seed=1", "-o", str(other)]) == 0
    a = set(read_rows(demo_build, ["template_id"]).column("template_id").to_pylist())
    b = set(read_rows(other, ["template_id"]).column("template_id").to_pylist())
    assert a != b


def test_failed_validation_exits_non_zero_and_publishes_nothing(demo_build: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "strict"
    # The demo corpus has no-face files on purpose, so requiring 99% acceptance must fail validation.
    code = main(["build", "--no-progress", "--running-mode", "in_memory", "--limit", "12",
                 "--set", "validate.min_accept_rate=0.99", "-o", str(out)])
    assert code == 1
    assert not out.exists()
    assert (tmp_path / "strict.partial" / "validation" / "report.html").is_file()
    assert "accept_rate" in capsys.readouterr().err
