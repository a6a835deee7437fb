"""Where an AU's levels start and how fast they rise: the intensity scale fitted to coded FACS levels (A-E).

`fit_levels` chooses, for one AU, the slope above the threshold and the level just above it (A to C: coders
seldom grade a barely visible AU as A) whose intensities are closest to the coded levels of the faces the head
finds the AU on, and reports the error over every graded level (missed AUs included) and over the found ones.
An AU found on too few graded faces to fit its own (`MIN_FOUND`) takes `pooled_level`: the level that the other
AUs' found faces were graded at, the corpus coders' habit rather than the AU's default of A.
"""

from __future__ import annotations

import numpy as np

from pipeline.au.head import PRESENT_AT, intensity_from_score

LEVEL_GRID = (1.0, 1.5, 2.0, 2.5, 3.0)  # candidate intensities just above the threshold (A to C)
MIN_FOUND = 5  # found graded faces an AU needs to fit its own slope and starting level


def fit_levels(scores: np.ndarray, levels: np.ndarray, default: float, below: float, min_found: int = MIN_FOUND
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
    return (slope, level_at, *level_errors(scores, levels, slope, below, level_at))


def level_errors(scores: np.ndarray, levels: np.ndarray, slope: float, below: float, level_at: float
                 ) -> tuple[float, float, float]:
    """(error over every coded level, error over the found ones, correlation) of the intensities this scale gives
    these scores; NaN where there is nothing to measure."""
    if len(levels) == 0:
        return float("nan"), float("nan"), float("nan")
    found = scores > 0
    predicted = intensity_from_score(scores, slope, below, level_at)
    error = np.abs(predicted - levels)
    corr = float(np.corrcoef(predicted, levels)[0, 1]) if len(levels) > 2 and predicted.std() > 0 and levels.std() > 0 \
        else float("nan")
    return float(error.mean()), float(error[found].mean()) if found.any() else float("nan"), corr


def pooled_level(found_levels: np.ndarray) -> float:
    """The level just above the threshold for an AU found too rarely to fit its own: of `LEVEL_GRID`, the one
    closest (mean absolute error; of equals, the lowest) to the coded levels of the faces where the other AUs were
    found. One number over many AUs' faces: how strongly this corpus's coders grade an AU they see."""
    return float(min((float(np.abs(found_levels - a).mean()), a) for a in LEVEL_GRID)[1])
