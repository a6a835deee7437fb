"""Where an AU's score becomes a found AU: the F1-best cut on held-out scores, kept off resting faces.

`Rule.threshold` takes the cut that maximises F1 on the coded faces (of the cuts within `F1_TOLERANCE` of the best,
the lowest), then raises it until at most `neutral_rate` of the neutral faces pass it (`Rule.cap`: the empirical
quantile, or a normal tail fitted to the resting faces' scores where that is higher). `f1_precision_recall`
scores a set of found AUs against the codes.
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

F1_TOLERANCE = 0.02


def best_threshold(scores: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """The score threshold maximising F1 on these (held-out) scores, and that F1. Ties go to the midpoint."""
    order = np.argsort(-scores)
    s, t = scores[order], y[order].astype(bool)
    tp = np.cumsum(t)
    fp = np.cumsum(~t)
    f1 = 2 * tp / (tp + fp + t.sum())
    # only cut between distinct scores
    valid = np.r_[s[1:] < s[:-1], True]
    f1 = np.where(valid, f1, -1)
    # Of the cuts within F1_TOLERANCE of the best, the lowest: posed corpora separate the classes by a wide gap,
    # and a cut high in it would miss the subtler expressions of unposed faces.
    best = int(np.flatnonzero(f1 >= f1.max() - F1_TOLERANCE)[-1])
    threshold = (s[best] + s[best + 1]) / 2 if best + 1 < len(s) else s[best] - 1e-6
    return float(threshold), float(f1[best])


@dataclass(frozen=True)
class Rule:
    """How thresholds are chosen: F1 on the coded faces, but an AU may fire on at most `neutral_rate` of the
    neutral faces (their held-out scores): a face without muscle activity gets no AU."""
    neutral: np.ndarray  # bool per face
    neutral_rate: float = 0.01

    def threshold(self, scores: np.ndarray, y: np.ndarray, rows: np.ndarray) -> tuple[float, float]:
        if not y.any() or y.all():
            return 0.0, 0.0
        threshold, _ = best_threshold(scores, y)
        neutral = self.neutral[rows]
        if neutral.any():
            threshold = max(threshold, self.cap(scores[neutral]))
        return threshold, f1_precision_recall(scores > threshold, y)[0]

    def cap(self, neutral_scores: np.ndarray) -> float:
        """The score that at most `neutral_rate` of resting faces exceed: the empirical quantile, or the normal
        tail fitted to the scores where that is higher. With ~100 neutral faces the 1% quantile is the second
        highest score; new people's resting faces would pass it more often than the rate says."""
        empirical = float(np.quantile(neutral_scores, 1.0 - self.neutral_rate))
        if len(neutral_scores) < 3:
            return empirical
        tail = float(neutral_scores.mean() + NormalDist().inv_cdf(1.0 - self.neutral_rate) * neutral_scores.std())
        return max(empirical, tail)


def f1_precision_recall(pred: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    tp = float((pred & y).sum())
    precision = tp / pred.sum() if pred.sum() else 0.0
    recall = tp / y.sum() if y.sum() else 0.0
    f1 = 2 * tp / (pred.sum() + y.sum()) if (pred.sum() + y.sum()) else 0.0
    return f1, precision, recall
