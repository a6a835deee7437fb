"""`fea calibrate`: per-AU occurrence thresholds on the 0-5 intensity scale, chosen from labelled builds.

Method (weak supervision by the emotion prototypes, schemas/emotion_prototypes.json): for each AU,
the positives are faces whose emotion label lists the AU as a core AU of its prototype; the
negatives are faces whose label lists it neither as core nor as supporting (neutral faces are
negatives for every AU). The threshold is the grid value (0.25 to 4.0, step 0.05) that maximises
balanced accuracy of `intensity >= threshold` (the rule the AU stage applies); ties go to the
lowest threshold, so the result is deterministic. An AU with fewer than `min_support` positives or
negatives, or whose best threshold does no better than chance, keeps the default 1.0 and is listed
under `uncalibrated` with the reason.

The output has the format of schemas/au_thresholds.json (so `au.thresholds` can point to it) plus
the method, support and score of each AU; its version is a hash of the inputs and settings.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

DEFAULT_THRESHOLD = 1.0
GRID = np.round(np.arange(0.25, 4.0001, 0.05), 2)


def load_faces(builds: list[Path]) -> tuple[list[str], list[str], np.ndarray]:
    """(AU codes, emotion per labelled face, intensities per face) from one or more builds."""
    codes: list[str] | None = None
    emotions: list[str] = []
    rows: list[list[float]] = []
    seen: set[str] = set()
    for build in builds:
        manifest = json.loads((Path(build) / "manifest.json").read_text())
        if codes is None:
            codes = list(manifest["au_vocabulary"])
        elif codes != list(manifest["au_vocabulary"]):
            raise ValueError(f"{build}: AU vocabulary differs from the first build's")
        files = sorted((Path(build) / "data").glob("*.parquet"))
        # Builds made before corpus AU labels have no au_model_intensity column.
        model = bool(files) and "au_model_intensity" in pq.read_schema(files[0]).names
        columns = ["face_id", "emotion", "au_intensity", *(["au_model_intensity"] if model else [])]
        table = pa.concat_tables(pq.read_table(f, columns=columns) for f in files)
        for row in table.to_pylist():
            if row["emotion"] and row["face_id"] not in seen:  # rows are per (face, task): one per face
                seen.add(row["face_id"])
                emotions.append(row["emotion"])
                # Thresholds apply to the model's estimate: where a corpus coded the AUs, au_intensity is the
                # corpus coding and the estimate sits in au_model_intensity.
                rows.append(row["au_model_intensity"] if model and row["au_model_intensity"] else row["au_intensity"])
    if codes is None:
        raise ValueError("no builds given")
    return codes, emotions, np.asarray(rows, dtype=np.float32).reshape(len(rows), len(codes))


def best_threshold(values: np.ndarray, positive: np.ndarray) -> tuple[float, float]:
    """Grid threshold maximising balanced accuracy (lowest on ties), and that accuracy."""
    predicted = values[:, None] >= GRID[None, :]
    tpr = (predicted & positive[:, None]).sum(0) / positive.sum()
    tnr = (~predicted & ~positive[:, None]).sum(0) / (~positive).sum()
    scores = (tpr + tnr) / 2
    best = int(np.argmax(scores))  # argmax returns the first (lowest) of equal maxima
    return float(GRID[best]), float(scores[best])


def calibrate(builds: list[Path], prototypes_file: Path, min_support: int = 10) -> dict[str, Any]:
    codes, emotions, intensities = load_faces(builds)
    prototypes = json.loads(Path(prototypes_file).read_text())["emotions"]
    labels = np.array(emotions)
    thresholds: dict[str, float] = {}
    support: dict[str, dict[str, int]] = {}
    score: dict[str, float] = {}
    uncalibrated: dict[str, str] = {}
    for column, code in enumerate(codes):
        pos_emotions = [e for e, p in prototypes.items() if code in p["core"]]
        neg_emotions = [e for e, p in prototypes.items() if code not in p["core"] + p["supporting"]]
        pos, neg = np.isin(labels, pos_emotions), np.isin(labels, neg_emotions)
        support[code] = {"positives": int(pos.sum()), "negatives": int(neg.sum())}
        if pos.sum() < min_support or neg.sum() < min_support:
            thresholds[code] = DEFAULT_THRESHOLD
            uncalibrated[code] = (f"{int(pos.sum())} positives, {int(neg.sum())} negatives "
                                  f"(< {min_support}); no prototype lists it as core" if not pos_emotions
                                  else f"{int(pos.sum())} positives, {int(neg.sum())} negatives (< {min_support})")
            continue
        keep = pos | neg
        threshold, accuracy = best_threshold(intensities[keep, column], pos[keep])
        if accuracy <= 0.5:  # no threshold does better than chance: keep the default rather than a grid edge
            thresholds[code] = DEFAULT_THRESHOLD
            uncalibrated[code] = "no threshold separates positives from negatives better than chance"
            continue
        thresholds[code], score[code] = threshold, accuracy
    digest = hashlib.sha256(json.dumps(
        {"codes": codes, "emotions": emotions, "intensities": np.round(intensities, 4).tolist(),
         "prototypes": prototypes, "min_support": min_support, "grid": GRID.tolist()}, sort_keys=True).encode())
    return {
        "version": f"calibrated-{digest.hexdigest()[:12]}",
        "description": __doc__.split("\n\n")[1].replace("\n", " "),
        "method": "prototype-weak-supervision/balanced-accuracy",
        "faces": len(emotions),
        "thresholds": thresholds,
        "balanced_accuracy": score,
        "support": support,
        "uncalibrated": uncalibrated,
    }


def write_calibration(result: dict[str, Any], output: Path) -> Path:
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    return output
