"""The dataset card (`<build>/README.md`): Hugging Face front matter, licences, counts that match the manifest."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from pipeline.card import front_matter, source_licence, write_dataset_card
from pipeline.cli import main
from pipeline.io.manifest import Manifest

ROWS = [  # face_id, split, emotion, au_present, task
    ("f1", "train", "happiness", ["AU6", "AU12"], "fe_recognition"),
    ("f1", "train", "happiness", ["AU6", "AU12"], "au_recognition"),
    ("f2", "train", None, ["AU1", "AU2"], "description"),
    ("f2", "train", None, ["AU1", "AU2"], "au_recognition"),
    ("f3", "test", "surprise", ["AU1", "AU2", "AU26"], "au_to_fe_reasoning"),
    ("f3", "test", "surprise", ["AU1", "AU2", "AU26"], "fe_recognition"),
]
MANIFEST = {
    "schema_version": "1.0.0",
    "created_unix": 1_700_000_000,
    "sources": [
        {"name": "demo", "kind": "demo", "path": None, "options": {}, "limit": None},
        {"name": "wild", "kind": "csv", "path": "/data/wild", "options": {"image_dir": "images"}, "limit": 50},
    ],
    "counts": {
        "inputs": 5, "accepted_inputs": 3, "rejected_inputs": 2,
        "rejected_by_reason": {"detect/no_face": 1, "read/unknown_label": 1},
        "face_rejects_of_accepted_inputs": {}, "reject_rows_by_reason": {"detect/no_face": 1, "read/unknown_label": 1},
        "rows": 6, "faces": 3, "rows_by_split": {"test": 2, "train": 4},
        "rows_by_task": {"au_recognition": 2, "au_to_fe_reasoning": 1, "description": 1, "fe_recognition": 2},
        "rows_by_emotion": {"None": 2, "happiness": 2, "surprise": 2},
    },
    "versions": {"detector": "mediapipe-face-landmarker@64184e229b26",
                 "au_model": "mediapipe-face-landmarker@64184e229b26+blendshape-map@1+thresholds@default-1",
                 "templates_version": "fce43877e3fc", "pipeline_version": "0.1.0", "params_hash": "2d9ac7812468ab19"},
    "models": {"face_landmarker": {"path": "face_landmarker.task", "sha256": "64184e229b26" + "0" * 52}},
    "au_vocabulary": ["AU1", "AU2", "AU6", "AU12", "AU26"],
    "au_intensity_scale": "0-5 continuous",
    "crop_size": 336,
    "splits": ["test", "train"],
}


def write_build(out: Path, manifest: dict) -> Path:
    """A build folder with the columns the card reads (no images)."""
    (out / "data").mkdir(parents=True)
    (out / "rejects").mkdir()
    for split in ("train", "test"):
        rows = [r for r in ROWS if r[1] == split]
        table = pa.table({
            "face_id": [r[0] for r in rows], "source": ["demo"] * len(rows),
            "source_item": [f"{r[0]}.jpg" for r in rows], "frame_index": pa.array([None] * len(rows), pa.int32()),
            "split": [r[1] for r in rows], "emotion": pa.array([r[2] for r in rows], pa.string()),
            "au_present": [r[3] for r in rows], "fe_au_consistency": pa.array([0.8] * len(rows), pa.float32()),
            "fe_au_conflict": [False] * len(rows), "task": [r[4] for r in rows],
        })
        pq.write_table(table, out / "data" / f"{split}-00000-of-00001.parquet")
    pq.write_table(pa.table({"source_item": ["landscape.jpg", "labels.csv:3"], "stage": ["detect", "read"],
                             "reason": ["no_face", "unknown_label"], "detail": ["", "emotion label 'meh'"]}),
                   out / "rejects" / "rejects-00000-of-00001.parquet")
    (out / "manifest.json").write_text(json.dumps(manifest))
    return out


def parse_card(path: Path) -> tuple[dict, str]:
    text = path.read_text()
    assert text.startswith("---\n")
    head, _, body = text[4:].partition("\n---\n")
    return yaml.safe_load(head), body


def test_card_front_matter_and_counts(tmp_path: Path) -> None:
    out = write_build(tmp_path / "build", MANIFEST)
    path = write_dataset_card(out)
    assert path == out / "README.md"
    front, body = parse_card(path)
    assert front["license"] == ["mit", "other"]
    assert "wild: as declared by the corpus owner" in front["license_name"]
    assert "image-text-to-text" in front["task_categories"]
    assert front["size_categories"] == ["n<1K"]
    assert front["configs"] == [{"config_name": "default", "data_files": [
        {"split": "test", "path": "data/test-*.parquet"}, {"split": "train", "path": "data/train-*.parquet"}]}]

    counts = MANIFEST["counts"]
    assert (f"**{counts['inputs']} inputs = {counts['accepted_inputs']} accepted + "
            f"{counts['rejected_inputs']} rejected**") in body
    assert f"{counts['rows']} rows (one per face and task) from {counts['faces']} faces" in body
    assert "| train | 4 |" in body and "| test | 2 |" in body
    assert "| detect/no_face | 1 | 1 | landscape.jpg |" in body
    assert "| read/unknown_label | 1 | 1 | labels.csv:3: emotion label 'meh' |" in body
    # label distribution: emotion, faces, rows, rows per split (test, train)
    assert "| happiness | 1 | 2 | 0 | 2 |" in body and "| surprise | 1 | 2 | 2 | 0 |" in body
    assert "| (unlabelled) | 1 | 2 | 0 | 2 |" in body
    assert "| AU1 | 66.7% |" in body and "| AU26 | 33.3% |" in body
    for value in MANIFEST["versions"].values():
        assert value in body
    assert "py-feat" in body and "https://github.com/cosanlab/py-feat" in body
    assert "AU values depend on the face alone" in body
    assert "AU9" in body and "crowd-sourced" in body
    assert "No face is labelled anger, contempt, disgust, fear, neutral, sadness" in body


def test_declared_licence_wins(tmp_path: Path) -> None:
    source = {"name": "mine", "kind": "csv", "options": {"licence": "CC-BY-4.0", "licence_url": "https://x.org/l"}}
    lic = source_licence(source)
    assert (lic["licence"], lic["hf_license"], lic["url"]) == ("CC-BY-4.0", "cc-by-4.0", "https://x.org/l")
    custom = source_licence({"name": "p", "kind": "csv", "options": {"licence": "research only"}})
    assert custom["hf_license"] == "other"
    assert source_licence({"name": "x", "kind": "new-kind"})["hf_license"] == "unknown"
    manifest = dict(MANIFEST, sources=[source])
    out = write_build(tmp_path / "build", manifest)
    front = front_matter(out, Manifest.model_validate(manifest), [lic])
    assert front["license"] == "cc-by-4.0" and "license_name" not in front


def test_card_lists_only_splits_with_files(tmp_path: Path) -> None:
    manifest = dict(MANIFEST, splits=["test", "train", "validation"])
    out = write_build(tmp_path / "build", manifest)
    front, _ = parse_card(write_dataset_card(out))
    assert [f["split"] for f in front["configs"][0]["data_files"]] == ["test", "train"]


@pytest.mark.slow
def test_every_build_has_its_card(tmp_path: Path) -> None:
    import datasets

    out = tmp_path / "build"
    assert main(["build", "--no-progress", "--no-validate", "--limit", "8", "-o", str(out)]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    front, body = parse_card(out / "README.md")
    assert front["license"] == "mit"
    counts = manifest["counts"]
    assert f"**{counts['inputs']} inputs = {counts['accepted_inputs']} accepted + " in body
    assert manifest["versions"]["params_hash"] in body
    # The card's configs are what `datasets` uses when it loads the folder.
    # Own cache: `datasets` caches a folder-with-card by its name and card, not its files' times, so a
    # folder named "build" from an earlier run would be served stale.
    ds = datasets.load_dataset(str(out), cache_dir=str(tmp_path / "hf-cache"))
    assert {s: ds[s].num_rows for s in ds} == counts["rows_by_split"]


def test_card_states_each_aus_known_accuracy(tmp_path: Path) -> None:
    head = {"name": "fea-calibrated", "version": "fit-abc", "method": "fitted", "fitted_on": ["ckplus (160 faces)"],
            "origin": {"AU1": "fitted", "AU2": "recalibrated:d@1", "AU6": "base:d@1", "AU12": "fitted",
                       "AU26": "base:d@1"},
            "quality": {"AU1": {"f1": 0.81, "precision": 0.9, "recall": 0.74, "neutral_rate": 0.012,
                                "intensity_mae_found": 0.8, "intensity_supported": True, "positives": 60,
                                "negatives": 100},
                        "AU2": {"f1": 0.5, "positives": 5, "negatives": 155},
                        "AU6": {"positives": 1, "negatives": 159, "kept_base": "1 coded positives (fewer than 3)"},
                        "AU12": {"f1": 0.93, "positives": 40, "negatives": 120}},
            "quality_source": "subject-disjoint cross-validation on the calibration builds",
            "summary": {"mean_f1": 0.55, "aus_scored": 20, "neutral_faces": 162, "aus_per_neutral_face": 0.31,
                        "neutral_faces_without_au": 0.83, "graded_levels": 235, "intensity_mae": 1.65,
                        "intensity_correlation": 0.4},
            "terms": "learned from CK+ FACS codes (Lucey et al. 2010), research use"}
    out = write_build(tmp_path / "build", {**MANIFEST, "au_head": head})
    _, body = parse_card(write_dataset_card(out))
    assert "AU head `fea-calibrated@fit-abc` (fitted, fitted on ckplus (160 faces))" in body
    assert "| AU1 | fitted | 0.81 | 0.90 | 0.74 | 1.2% | 0.80 | yes | 60/100 |" in body
    assert "| AU12 | fitted | 0.93 |" in body and "40/120" in body
    assert "| AU6 | base:d@1 | not measured |" in body and "| 1/159 | 1 coded positives (fewer than 3) |" in body
    assert "| AU26 | base:d@1 | not measured |" in body
    # The head's own figures: neutral faces, intensity agreement, the corpus terms.
    assert "0.31 AUs per face, 83% with none" in body and "mean absolute error 1.65 levels" in body
    assert "research use" in body and "left ungraded" in body
    # The build's conflict rate travels with it too.
    assert "flagged as conflicts" in body
