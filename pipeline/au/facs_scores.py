"""How well AU intensities agree with a corpus's FACS coding: the figures a head is judged by.

Given a FaceTable (corpus codes, neutral negatives, graded levels) and the intensities a head gives its faces
(NaN where an AU was not scored), per AU: F1, precision and recall on the expressive coded faces (neutral
negatives excluded, as FACS-coded peaks are scored), and the share of neutral faces it fires on; for the
head: mean F1 over the AUs coded at least `min_support` times, AUs per neutral face and the share of neutral
faces with none, and the error of the intensities against every graded FACS level (A-E = 1-5), missed AUs
included. Used by `fea calibrate` (held-out intensities) and benchmarks/au_facs_eval.py (any head, any build).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pipeline.au.head import PRESENT_AT
from pipeline.au.training_data import FaceTable


def _round(value: float, digits: int) -> float | None:
    return None if value is None or np.isnan(value) else round(float(value), digits)


def per_au(faces: FaceTable, intensity: np.ndarray, row: int) -> dict[str, Any] | None:
    """One AU's figures; None when it was not scored or the corpus codes no face for it."""
    scored = np.isfinite(intensity[:, row])
    coded = scored & np.isfinite(faces.labels[:, row])
    expressive = coded & ~faces.neutral
    if not expressive.any():
        return None
    found = intensity[:, row] >= PRESENT_AT
    truth = faces.labels[:, row] > 0
    tp = int((found & truth & expressive).sum())
    n_found, n_true = int((found & expressive).sum()), int((truth & expressive).sum())
    out = {"support": n_true, "f1": _round(2 * tp / (n_found + n_true), 4) if n_found + n_true else None,
           "precision": _round(tp / n_found, 4) if n_found else None,
           "recall": _round(tp / n_true, 4) if n_true else None}
    neutral = scored & faces.neutral
    if neutral.any():
        out["neutral_rate"] = _round(found[neutral].mean(), 4)
    return out


def score_head(faces: FaceTable, intensity: np.ndarray, min_support: int = 3) -> dict[str, Any]:
    """Head-level figures over the AUs that were scored (see the module text)."""
    scored_aus = [row for row in range(len(faces.codes)) if np.isfinite(intensity[:, row]).any()]
    aus = {faces.codes[row]: figures for row in scored_aus if (figures := per_au(faces, intensity, row))}
    counted = [f["f1"] for f in aus.values() if f["support"] >= min_support and f["f1"] is not None]
    out: dict[str, Any] = {"mean_f1": _round(np.mean(counted), 4) if counted else None, "aus_scored": len(counted)}
    if faces.neutral.any() and scored_aus:
        found = (np.nan_to_num(intensity[faces.neutral][:, scored_aus], nan=0.0) >= PRESENT_AT).sum(axis=1)
        out |= {"neutral_faces": int(faces.neutral.sum()), "aus_per_neutral_face": _round(found.mean(), 4),
                "neutral_faces_without_au": _round((found == 0).mean(), 4)}
    levels = faces.graded & (np.nan_to_num(faces.labels) > 0) & np.isfinite(intensity)
    if levels.any():
        predicted, truth = intensity[levels], faces.labels[levels]
        out |= {"graded_levels": int(levels.sum()), "intensity_mae": _round(np.abs(predicted - truth).mean(), 3),
                "intensity_correlation": _round(np.corrcoef(predicted, truth)[0, 1], 3)
                if len(truth) > 2 and predicted.std() > 0 and truth.std() > 0 else None}
    out["aus"] = aus
    return out
