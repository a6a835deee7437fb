"""How much emotion information the released AU vector keeps, against the raw features it is computed from.

The same cross-validated linear probe (standardised logistic regression, repeated stratified k-fold, the
same folds for every input) predicts each labelled face's emotion from the released `au_intensity`, from
the 52 raw `blendshapes`, and from blendshapes + `face_measures`. An AU head that throws information away
scores below the blendshapes it reads. Used by the HTML report and benchmarks/au_probe.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.io.build_dir import BuildDir

COLUMNS = ["face_id", "emotion", "au_intensity", "au_present", "blendshapes", "face_measures", "fe_au_conflict",
           "fe_au_consistency"]


def read_faces(builds: list[str | Path | BuildDir]) -> list[dict]:
    """One row per face (a build has one per face and task), with the columns the probe reads."""
    faces: dict[str, dict] = {}
    for location in builds:
        build = BuildDir(location)
        for f in build.shards():
            shard = build.parquet(f)
            present = [c for c in COLUMNS if c in shard.schema_arrow.names]  # older builds lack face_measures
            for row in shard.read(columns=present).to_pylist():
                faces.setdefault(row["face_id"], {"face_measures": None, **row})
    return list(faces.values())


def probe_accuracy(x: np.ndarray, y: np.ndarray, folds: int = 5, repeats: int = 5) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import RepeatedStratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000))
    cv = RepeatedStratifiedKFold(n_splits=folds, n_repeats=repeats, random_state=0)
    return round(float(cross_val_score(model, x, y, cv=cv).mean()), 4)


def emotion_probe(faces: list[dict], folds: int = 5, repeats: int = 5, max_faces: int = 5000) -> dict | None:
    """Probe accuracy per input on the labelled faces, or None when there are too few to cross-validate
    (fewer than `folds` faces in some emotion, or fewer than two emotions)."""
    labelled = [f for f in faces if f["emotion"] and f["blendshapes"]]
    if len(labelled) > max_faces:  # a fixed, seeded subset: the probe's cost stays bounded
        picks = np.random.default_rng(0).choice(len(labelled), max_faces, replace=False)
        labelled = [labelled[i] for i in sorted(picks)]
    y = np.array([f["emotion"] for f in labelled])
    classes, counts = np.unique(y, return_counts=True)
    keep = np.isin(y, classes[counts >= folds])  # an emotion with fewer faces than folds cannot be stratified
    if len(set(y[keep])) < 2:
        return None
    labelled, y = [f for f, k in zip(labelled, keep, strict=True) if k], y[keep]
    inputs = {"au_intensity": np.array([f["au_intensity"] for f in labelled], dtype=np.float64),
              "blendshapes": np.array([f["blendshapes"] for f in labelled], dtype=np.float64)}
    if all(f["face_measures"] for f in labelled):
        measures = np.array([f["face_measures"] for f in labelled], dtype=np.float64)
        inputs["blendshapes+face_measures"] = np.concatenate([inputs["blendshapes"], measures], axis=1)
    return {"faces": len(y), "emotions": len(set(y)), "folds": folds, "repeats": repeats,
            "majority_rate": round(float(np.unique(y, return_counts=True)[1].max() / len(y)), 4),
            "accuracy": {name: probe_accuracy(x, y, folds, repeats) for name, x in inputs.items()}}
