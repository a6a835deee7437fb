"""validate_build on tiny synthetic builds: a valid one passes, each kind of breakage fails by name."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from pipeline.domain.data import PROJECT_ROOT
from pipeline.validate import validate_build

SCHEMAS = PROJECT_ROOT / "schemas"
SUITE = SCHEMAS / "expectations" / "fea_record_suite.json"
FEATURES = datasets.Features.from_dict(json.loads((SCHEMAS / "record.features.json").read_text())["features"])
AU_VOCAB = [line.split(",")[0] for line in (SCHEMAS / "au_vocabulary.csv").read_text().splitlines()[1:] if line]
CROP = 32


def _jpeg(shade: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (CROP, CROP), (shade, 100, 200 - shade)).save(buf, format="JPEG")
    return buf.getvalue()


def _row(i: int) -> dict[str, Any]:
    sha = hashlib.sha256(f"img{i}".encode()).hexdigest()
    intensity = [0.0] * len(AU_VOCAB)
    intensity[AU_VOCAB.index("AU12")] = 2.5
    return {
        "sample_id": hashlib.sha256(f"s{i}".encode()).hexdigest()[:24],
        "face_id": hashlib.sha256(f"f{i}".encode()).hexdigest()[:20],
        "source": "demo",
        "source_item": f"img{i}.jpg",
        "subject_id": f"S{i}",
        "split": "train",
        "image_sha256": sha,
        "frame_index": None,
        "face_index": 0,
        "image": {"bytes": _jpeg(20 * i), "path": None},
        "source_width": 640,
        "source_height": 480,
        "bbox": [10.0, 20.0, 110.0, 140.0],
        "landmarks_5": [[1.0, 2.0]] * 5,
        "landmarks_5_aligned": [[1.0, 2.0]] * 5,
        "yaw": 5.0,
        "pitch": -3.0,
        "roll": 1.0,
        "face_size_px": 40.0,
        "low_resolution": False,
        "blur_score": 120.0,
        "num_faces_detected": 1,
        "detect_attempt": "original",
        "emotion": "happiness" if i % 2 else None,
        "emotion_raw": "happy" if i % 2 else None,
        "emotion_source": "annotation" if i % 2 else None,
        "au_intensity": intensity,
        "au_present": ["AU12"],
        "au_source": "mediapipe",
        "blendshapes": [0.1] * 52,
        "fe_au_consistency": 0.5 if i % 2 else None,
        "evidence_aus": ["AU12"] if i % 2 else [],
        "fe_au_conflict": False,
        "task": "fe_recognition" if i % 2 else "au_recognition",
        "template_id": "t1",
        "conversations": [
            {"role": "user", "content": "<image>\nWhich emotion does this face show?"},
            {"role": "assistant", "content": "Happiness." if i % 2 else "AU12 (lip corner puller) is active."},
        ],
        "text_source": "template",
        "llm_status": None,
        "llm_model": None,
        "llm_detail": None,
        "grounding_verdict": "grounded",
        "grounding_reason": None,
        "detector": "mediapipe-face-landmarker",
        "au_model": "mediapipe-blendshapes",
        "templates_version": "1",
        "pipeline_version": "0.1.0",
        "params_hash": "0123456789abcdef",
    }


def _write_build(out: Path, rows: list[dict[str, Any]], manifest: dict[str, Any]) -> Path:
    (out / "data").mkdir(parents=True)
    table = pa.Table.from_pylist(rows, schema=FEATURES.arrow_schema)
    pq.write_table(table, out / "data" / "train-00000-of-00001.parquet", compression="zstd")
    (out / "rejects").mkdir()
    reject = {"source": "demo", "source_item": "x.jpg", "stage": "detect", "reason": "no_face"}
    pq.write_table(pa.Table.from_pylist([reject]), out / "rejects" / "rejects-00000.parquet")
    (out / "manifest.json").write_text(json.dumps(manifest))
    return out


def _manifest(rows: int = 5) -> dict[str, Any]:
    return {
        "counts": {
            "inputs": 6,
            "accepted_inputs": 5,
            "rejected_inputs": 1,
            "rejected_by_reason": {"detect/no_face": 1},
            "rows": rows,
        },
        "au_vocabulary": AU_VOCAB,
        "crop_size": CROP,
    }


@pytest.fixture(scope="module")
def valid_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("valid") / "build"
    return _write_build(out, [_row(i) for i in range(5)], _manifest())


def _variant(
    tmp_path: Path, mutate_row: Callable[[list[dict[str, Any]]], None] | None = None, **manifest_counts: Any
) -> Path:
    rows = [_row(i) for i in range(5)]
    if mutate_row:
        mutate_row(rows)
    manifest = _manifest()
    manifest["counts"].update(manifest_counts)
    return _write_build(tmp_path / "build", rows, manifest)


def test_valid_build_passes(valid_build: Path) -> None:
    report = validate_build(valid_build, SUITE, min_accept_rate=0.5)
    assert report.success, report.failed
    names = {c.name for c in report.checks}
    assert {"manifest_accounting", "images_decode", "arrow_schema", "rejects_table"} <= names
    assert any(n.startswith("expect_column_values_to_be_unique[sample_id]") for n in names)
    assert report.result_path == valid_build / "validation" / "result.json"
    result = json.loads(report.result_path.read_text())
    assert result["success"] is True
    assert result["gx"]["statistics"]["unsuccessful_expectations"] == 0
    page = (valid_build / "validation" / "report.html").read_text()
    assert "Validation PASSED" in page and "<script" not in page and "http" not in page


def test_accept_rate_below_minimum_fails(valid_build: Path) -> None:
    report = validate_build(valid_build, SUITE, min_accept_rate=0.9)
    assert report.failed == ["accept_rate"]


def test_duplicate_sample_id(tmp_path: Path) -> None:
    def dup(rows: list[dict[str, Any]]) -> None:
        rows[1]["sample_id"] = rows[0]["sample_id"]

    report = validate_build(_variant(tmp_path, dup), SUITE)
    assert not report.success
    assert report.failed == ["expect_column_values_to_be_unique[sample_id]"]


def test_emotion_outside_vocabulary(tmp_path: Path) -> None:
    def bad(rows: list[dict[str, Any]]) -> None:
        rows[1]["emotion"] = "joy"

    report = validate_build(_variant(tmp_path, bad), SUITE)
    # "Happiness." is no longer the label either, so the grounding check fails too.
    assert set(report.failed) == {"expect_column_values_to_be_in_set[emotion]", "answer_label_agreement"}
    detail = dict((c.name, c.detail) for c in report.checks)["expect_column_values_to_be_in_set[emotion]"]
    assert "joy" in detail


def test_two_image_tokens(tmp_path: Path) -> None:
    def twice(rows: list[dict[str, Any]]) -> None:
        rows[2]["conversations"][1]["content"] = "<image> AU12 (lip corner puller) is active."

    report = validate_build(_variant(tmp_path, twice), SUITE)
    assert report.failed == ["expect_column_values_to_be_in_set[n_image_tokens]"]


def test_manifest_counts_do_not_add_up(tmp_path: Path) -> None:
    report = validate_build(_variant(tmp_path, inputs=7), SUITE)
    assert report.failed == ["manifest_accounting"]
    report = validate_build(_variant(tmp_path / "b", rejected_by_reason={"detect/no_face": 2}), SUITE)
    assert set(report.failed) == {"manifest_rejects_by_reason", "rejects_table"}


def test_manifest_rows_mismatch(tmp_path: Path) -> None:
    report = validate_build(_variant(tmp_path, rows=6), SUITE)
    assert report.failed == ["manifest_rows"]


def test_wrong_image_size(tmp_path: Path) -> None:
    def small(rows: list[dict[str, Any]]) -> None:
        buf = io.BytesIO()
        Image.new("RGB", (CROP // 2, CROP // 2)).save(buf, format="JPEG")
        rows[0]["image"] = {"bytes": buf.getvalue(), "path": None}

    report = validate_build(_variant(tmp_path, small), SUITE)
    assert report.failed == ["images_decode"]


def test_missing_data_dir(tmp_path: Path, valid_build: Path) -> None:
    out = tmp_path / "build"
    shutil.copytree(valid_build, out)
    shutil.rmtree(out / "data")
    report = validate_build(out, SUITE)
    assert not report.success
    assert report.failed == ["read_build"]
    assert "missing data directory" in report.checks[1].detail
    assert json.loads((out / "validation" / "result.json").read_text())["success"] is False


def test_unreadable_parquet(tmp_path: Path, valid_build: Path) -> None:
    out = tmp_path / "build"
    shutil.copytree(valid_build, out)
    (out / "data" / "train-00000-of-00001.parquet").write_bytes(b"not parquet")
    report = validate_build(out, SUITE)
    assert "read_build" in report.failed
    assert "unreadable parquet" in dict((c.name, c.detail) for c in report.checks)["read_build"]


def test_missing_build_dir_writes_nothing(tmp_path: Path) -> None:
    report = validate_build(tmp_path / "nope", SUITE)
    assert not report.success and report.result_path is None
    assert {"manifest", "read_build"} <= set(report.failed)
    assert not (tmp_path / "nope").exists()


def test_fe_recognition_needs_emotion(tmp_path: Path) -> None:
    def unlabelled(rows: list[dict[str, Any]]) -> None:
        rows[1].update(emotion=None, fe_au_consistency=None)

    report = validate_build(_variant(tmp_path, unlabelled), SUITE)
    assert set(report.failed) == {
        "expect_column_values_to_not_be_null[emotion] where task == 'fe_recognition'",
        "answer_label_agreement",  # the answer still says "Happiness." without a label
    }


def test_report_dir(tmp_path: Path, valid_build: Path) -> None:
    report = validate_build(valid_build, SUITE, report_dir=tmp_path / "reports" / "validation")
    assert report.success
    assert report.html_path == tmp_path / "reports" / "validation" / "report.html"
    assert report.html_path.exists() and report.result_path and report.result_path.exists()


def test_label_tasks_need_emotion_and_mixed_cues_needs_a_conflict(tmp_path: Path) -> None:
    def broken(rows: list[dict[str, Any]]) -> None:
        # an unlabelled row rendered as a multiple-choice question, a mixed-cues answer without a conflict
        rows[0].update(task="fe_multiple_choice")
        rows[1].update(task="mixed_cues", fe_au_conflict=False)
        rows[3].update(task="mixed_cues", fe_au_conflict=True)

    report = validate_build(_variant(tmp_path, broken), SUITE)
    failed = set(report.failed)
    assert any(name.startswith("expect_column_values_to_not_be_null[emotion] where (task == 'fe_multiple_choice')")
               for name in failed), failed
    assert "expect_column_values_to_be_in_set[fe_au_conflict] where task == 'mixed_cues'" in failed, failed
    assert "expect_column_values_to_be_in_set[task]" not in failed


def test_suite_process_gives_the_same_report(valid_build: Path, tmp_path: Path) -> None:
    """The GX suite run in a separate process (as `fea build` does) reports exactly what it reports here."""
    from pipeline.process.warm_process import suite_process

    here = validate_build(valid_build, SUITE, report_dir=tmp_path / "here")
    with suite_process() as executor:
        there = validate_build(valid_build, SUITE, report_dir=tmp_path / "there", suite_executor=executor)
    assert there.checks == here.checks and there.success
    assert json.loads(there.result_path.read_text())["seconds"] > 0


def test_suite_process_failure_falls_back_to_this_process(valid_build: Path, tmp_path: Path) -> None:
    from concurrent.futures import Future

    class Broken:
        def submit(self, *args: Any, **kwargs: Any) -> Future:
            future: Future = Future()
            future.set_exception(RuntimeError("process pool died"))
            return future

    report = validate_build(valid_build, SUITE, report_dir=tmp_path, suite_executor=Broken())
    assert report.success and any(c.name.startswith("expect_column") for c in report.checks)


def test_reverify_sample_is_named_in_the_report(valid_build: Path, tmp_path: Path) -> None:
    report = validate_build(valid_build, SUITE, report_dir=tmp_path, reverify_rows=2)
    check = next(c for c in report.checks if c.name == "answer_label_agreement")
    assert check.success and "2 answers (spread sample of 5)" in check.detail


def test_report_page_escapes_what_the_data_says() -> None:
    from pipeline.io.build_dir import BuildDir
    from pipeline.validate import Check, ValidationReport
    from pipeline.validate.report import render_html

    report = ValidationReport(False, [Check("ok", True, "fine"), Check("bad", False, "<script>x</script> & more")])
    page = render_html(report, BuildDir("/tmp/a<b>"))
    assert "<script>" not in page and "&lt;script&gt;x&lt;/script&gt; &amp; more" in page
    assert "Validation FAILED" in page and "1 of 2 checks passed" in page and "/tmp/a&lt;b&gt;" in page
    assert page.index(">bad<") < page.index(">ok<")  # failed checks first
