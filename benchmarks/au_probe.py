"""How much emotion information the released AU vector carries: a cross-validated linear probe.

Reads a build (one row per face), fits a logistic regression from `au_intensity` to `emotion`
with stratified k-fold cross-validation, and compares its accuracy with the majority-class rate.

    python benchmarks/au_probe.py build/fitw
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("build", type=Path)
    ap.add_argument("--folds", type=int, default=5)
    args = ap.parse_args()
    table = pa.concat_tables(pq.read_table(f, columns=["face_id", "emotion", "au_intensity"])
                             for f in sorted((args.build / "data").glob("*.parquet")))
    rows = {r["face_id"]: r for r in table.to_pylist() if r["emotion"]}
    x = np.array([r["au_intensity"] for r in rows.values()], dtype=np.float32)
    y = np.array([r["emotion"] for r in rows.values()])
    classes, counts = np.unique(y, return_counts=True)
    folds = min(args.folds, int(counts.min()))
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000))
    scores = cross_val_score(probe, x, y, cv=StratifiedKFold(folds, shuffle=True, random_state=0))
    figures = {
        "faces": len(y), "classes": len(classes), "folds": folds,
        "probe_accuracy": round(float(scores.mean()), 4), "probe_accuracy_std": round(float(scores.std()), 4),
        "majority_rate": round(float(counts.max() / len(y)), 4), "chance_rate": round(1 / len(classes), 4),
    }
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
