"""`fea calibrate`: thresholds from labelled builds, deterministic, with honest fallbacks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.calibrate import calibrate
from pipeline.cli import main
from pipeline.config import PROJECT_ROOT

PROTOTYPES = PROJECT_ROOT / "schemas" / "emotion_prototypes.json"
CODES = ["AU1", "AU6", "AU9", "AU12", "AU43"]


def synthetic_build(folder: Path, n: int = 40) -> Path:
    """Happiness faces with AU12 ~ 3 and AU6 ~ 2; others with both ~ 0.5; AU9 always 0."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        emotion = ["happiness", "sadness", "anger", "neutral"][i % 4]
        happy = emotion == "happiness"
        intensity = [rng.uniform(0, 2), rng.uniform(1.5, 2.5) if happy else rng.uniform(0, 1), 0.0,
                     rng.uniform(2.5, 3.5) if happy else rng.uniform(0, 1), rng.uniform(0, 1)]
        rows.append({"face_id": f"f{i}", "emotion": emotion, "au_intensity": intensity})
    (folder / "data").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows), folder / "data" / "train-00000-of-00001.parquet")
    (folder / "manifest.json").write_text(json.dumps({"au_vocabulary": CODES}))
    return folder


def test_threshold_separates_the_known_classes(tmp_path: Path) -> None:
    result = calibrate([synthetic_build(tmp_path / "b")], PROTOTYPES, min_support=5)
    # Negatives lie below 1.0; positives above 2.5 (AU12) and 1.5 (AU6): the lowest perfect threshold.
    assert 0.9 <= result["thresholds"]["AU12"] <= 2.5 and result["balanced_accuracy"]["AU12"] == 1.0
    assert 0.9 <= result["thresholds"]["AU6"] <= 1.5 and result["balanced_accuracy"]["AU6"] == 1.0
    assert "AU9" in result["uncalibrated"] and result["thresholds"]["AU9"] == 1.0  # no signal: default
    assert "AU43" in result["uncalibrated"]  # no prototype lists it as core
    assert result["support"]["AU12"] == {"positives": 10, "negatives": 30}  # happiness vs sadness, anger, neutral


def test_same_build_same_file_and_cli(tmp_path: Path, capsys) -> None:
    build = synthetic_build(tmp_path / "b")
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    assert main(["calibrate", str(build), "-o", str(a), "--min-support", "5"]) == 0
    assert main(["calibrate", str(build), "-o", str(b), "--min-support", "5"]) == 0
    assert a.read_bytes() == b.read_bytes()
    data = json.loads(a.read_text())
    assert data["version"].startswith("calibrated-") and set(data["thresholds"]) == set(CODES)
    assert "use it with --set au.thresholds=" in capsys.readouterr().out


def test_too_little_support_keeps_defaults(tmp_path: Path) -> None:
    result = calibrate([synthetic_build(tmp_path / "b", n=8)], PROTOTYPES, min_support=10)
    assert set(result["uncalibrated"]) == set(CODES)
    assert all(v == 1.0 for v in result["thresholds"].values())


def test_calibrates_the_model_estimate_not_corpus_au_labels(tmp_path: Path) -> None:
    """Where a corpus coded the AUs, au_intensity is its coding; thresholds must come from au_model_intensity."""
    plain = calibrate([synthetic_build(tmp_path / "plain")], PROTOTYPES, min_support=5)
    build = synthetic_build(tmp_path / "coded")
    shard = build / "data" / "train-00000-of-00001.parquet"
    rows = pq.read_table(shard).to_pylist()
    for row in rows:  # corpus coding: every AU at 5 (would make every threshold useless)
        row["au_model_intensity"], row["au_intensity"] = row["au_intensity"], [5.0] * len(CODES)
    pq.write_table(pa.Table.from_pylist(rows), shard)
    coded = calibrate([build], PROTOTYPES, min_support=5)
    assert coded["thresholds"] == plain["thresholds"] and coded["balanced_accuracy"]["AU12"] == 1.0
