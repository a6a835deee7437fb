"""Where an AU's levels start and how fast they rise: the intensity scale fitted to coded FACS levels (A-E).

`fit_levels` chooses, for one AU, the slope above the threshold and the level just above it (A to C: coders
seldom grade a barely visible AU as A) whose intensities are closest to the coded levels of the faces the head
finds the AU on, and reports the error over every graded level (missed AUs included) and over the found ones.
"""

from __future__ import annotations

import numpy as np

from pipeline.au.head import PRESENT_AT, intensity_from_score

LEVEL_GRID = (1.0, 1.5, 2.0, 2.5, 3.0)  # candidate intensities just above the threshold (A to C)


def fit_levels(scores: np.ndarray, levels: np.ndarray, default: float, below: float, min_found: int = 5
               ) -> tuple[float, float, float, float, float]:
    """The slope above the threshold, and the level just above it, whose intensities are closest (mean absolute
    error) to the coded FACS levels (A-E = 1-5) of the faces the head finds the AU on: coders seldom grade a
    barely visible AU as A. With fewer than `min_found` found: `default` and level A. `below` is the slope under
    the threshold. Returns (slope, level at the threshold, error over every level, error over the found ones,
    correlation); NaN where there is nothing to measure."""
    found = scores > 0
    slope, level_at = default, PRESENT_AT
    if found.sum() >= min_found:
        candidates = [(float(np.abs(intensity_from_score(scores[found], s, level_at=a) - levels[found]).mean()), a, s)
                      for a in LEVEL_GRID for s in np.geomspace(0.02, 20.0, 121)]
        _, level_at, slope = min(candidates)  # the smallest error; of equals, the lowest level, then slope
        slope, level_at = float(slope), float(level_at)
    if len(levels) == 0:
        return slope, level_at, float("nan"), float("nan"), float("nan")
    predicted = intensity_from_score(scores, slope, below, level_at)
    error = np.abs(predicted - levels)
    corr = float(np.corrcoef(predicted, levels)[0, 1]) if len(levels) > 2 and predicted.std() > 0 and levels.std() > 0 \
        else float("nan")
    return slope, level_at, float(error.mean()), float(error[found].mean()) if found.any() else float("nan"), corr
