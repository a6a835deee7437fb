"""How well AU intensities agree with a corpus's FACS coding: the figures a head is judged by.

Given a FaceTable (corpus codes, neutral negatives, graded levels) and the intensities a head gives its faces
(NaN where an AU was not scored), per AU: F1, precision and recall on the expressive coded faces (neutral
negatives excluded, as FACS-coded peaks are scored), and the share of neutral faces it fires on; for the
head: mean F1 over the AUs coded at least `min_support` times, AUs per neutral face and the share of neutral
faces with none, and the error of the intensities against every graded FACS level (A-E = 1-5), missed AUs
included. Used by `fea calibrate` (held-out intensities) and benchmarks/au_facs_eval.py (any head, any build).

A few dozen people's faces give these figures a wide margin: another group of people of the same corpus can
score quite differently (heads learned on one half of CK+'s even subjects found 0.05 to 0.30 AUs per neutral
face on the other half, depending on the split). `intervals` says how wide, for the mean F1, AUs per neutral face
and the level error, by resampling people (the subjects, with replacement) and recomputing those figures. They
are percentile intervals: usually around the figure, but not centred on it.
"""

from __future__ import annotations

import warnings
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


def intervals(faces: FaceTable, intensity: np.ndarray, min_support: int = 3, resamples: int = 2000,
              level: float = 0.95, seed: int = 0) -> dict[str, Any]:
    """Percentile intervals (`level`) of the head-level figures of `score_head` over people: each resample draws
    the subjects (faces.groups) with replacement and takes all their faces. The mean F1 is over the same AUs as
    the point figure; a resample where an AU has neither a coded nor a found face leaves it out of that mean.
    `f1_by_au`: each counted AU's F1 interval. `over`: "people", or "faces" where every face is its own group
    (no subject ids). Empty with fewer than two groups. Deterministic for a `seed`."""
    groups, subject = np.unique(np.asarray(faces.groups), return_inverse=True)
    if len(groups) < 2:  # one person: every resample is the same faces, a width of 0 would say nothing
        return {}
    draws = np.random.default_rng(seed).integers(0, len(groups), size=(resamples, len(groups)))
    drawn = np.apply_along_axis(np.bincount, 1, draws, minlength=len(groups)).astype(np.float64)  # per subject

    def summed(values: np.ndarray) -> np.ndarray:
        """Per-face values summed over each resample's faces (resamples x ...), through per-subject sums: the
        work and memory grow with the subjects, not the faces (a video corpus has thousands of frames each)."""
        per_subject = np.zeros((len(groups), *values.shape[1:]))
        np.add.at(per_subject, subject, values.astype(np.float64))
        return drawn @ per_subject
    found = np.nan_to_num(intensity, nan=0.0) >= PRESENT_AT
    truth = np.nan_to_num(faces.labels) > 0
    bounds = {}
    point = score_head(faces, intensity, min_support)
    counted = [faces.codes.index(code) for code, f in point["aus"].items()
               if f["support"] >= min_support and f["f1"] is not None]
    if counted:
        expressive = np.isfinite(intensity) & np.isfinite(faces.labels) & ~faces.neutral[:, None]
        tp = summed((found & truth & expressive)[:, counted])
        claimed = summed(((found | truth) & expressive)[:, counted]) + tp  # found + coded, per resample and AU
        f1 = _ratio(2 * tp, claimed)
        with warnings.catch_warnings():  # a resample without any of the counted AUs: no mean
            warnings.simplefilter("ignore", RuntimeWarning)
            bounds["mean_f1"] = np.nanmean(f1, axis=1)
    scored = [row for row in range(len(faces.codes)) if np.isfinite(intensity[:, row]).any()]
    if faces.neutral.any() and scored:
        on_neutral = found[:, scored].sum(axis=1) * faces.neutral
        bounds["aus_per_neutral_face"] = _ratio(summed(on_neutral), summed(faces.neutral))
    levels = faces.graded & truth & np.isfinite(intensity)
    if levels.any():
        error = np.where(levels, np.abs(np.nan_to_num(intensity) - np.nan_to_num(faces.labels)), 0.0).sum(axis=1)
        bounds["intensity_mae"] = _ratio(summed(error), summed(levels.sum(axis=1)))
    tail = (1.0 - level) / 2 * 100

    def percentiles(values: np.ndarray) -> list[float | None] | None:
        values = values[np.isfinite(values)]
        return [_round(np.percentile(values, tail), 4), _round(np.percentile(values, 100 - tail), 4)] \
            if len(values) else None

    out: dict[str, Any] = {name: bounds for name, values in bounds.items() if (bounds := percentiles(values))}
    if counted:  # each counted AU's own F1: with a handful of coded faces, an AU's figure is known to +-0.3
        by_au = {faces.codes[row]: percentiles(f1[:, j]) for j, row in enumerate(counted)}
        out["f1_by_au"] = {code: bounds for code, bounds in by_au.items() if bounds}
    # Without subject ids every face is its own group: the resampling is then over faces, and says so.
    return out | {"over": "people" if len(groups) < len(faces.groups) else "faces"} if out else {}


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """Elementwise numerator / denominator, NaN where the denominator is 0 (nothing drawn to measure)."""
    safe = np.where(denominator > 0, denominator, 1.0)
    return np.where(denominator > 0, numerator / safe, np.nan)
