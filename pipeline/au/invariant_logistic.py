"""The penalised logistic model of one AU: what its score must not change with costs it more than plain size.

A class-balanced logistic regression on standardised features, whose penalty is the spread of its score over
label-free variation (`Invariance`): resting faces of different people (identity, not expression) and paired views
of the same faces (what a corpus's look changes), plus a ridge. Directions that identity or a corpus's look move
cost more, so the model reads what expressions change. Used by `pipeline/au/fit.py` for each learned AU.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

MIN_SCALE = 0.01  # features are blendshape scores (0-1), length ratios and appearance components: less spread is noise
MIN_RESTING = 20  # neutral faces needed to estimate how resting faces differ between people
RESTING_RIDGE = 0.3  # the plain L2 share of the penalty, against the resting faces' (standardised) variance


def standardise(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    center = x.mean(axis=0)
    # A feature that barely moves in the training faces (a dead blendshape: cheekPuff, mouthClose on small faces)
    # is not stretched to unit spread: its tiny weights would become huge ones, and a face where it does move
    # (a sharp photo) would get its AUs from noise.
    return center, np.maximum(x.std(axis=0), MIN_SCALE)


@dataclass(frozen=True)
class Invariance:
    """What a learned AU score should not change with. `resting`: neutral faces (no muscle activity) among the
    training faces; how they differ is identity, not expression. `shift`: feature differences between two views of
    the same faces (e.g. a photo at full resolution and reduced to 48 px grey, rows view b - view a): what a
    corpus's look changes. Both are label-free; the model's penalty is its score's spread over them."""
    resting: np.ndarray  # bool per training face
    shift: np.ndarray | None = None  # (pairs, features), in the model's raw feature units

    def rows(self, index: np.ndarray) -> Invariance:
        return replace(self, resting=self.resting[index])

    def spread(self, z: np.ndarray, scale: np.ndarray) -> np.ndarray | None:
        """The second moment of the score-relevant variation, in the standardised units of `z`; None when there
        is too little of it to estimate."""
        parts = []
        if self.resting.sum() >= MIN_RESTING:
            parts.append(np.cov(z[self.resting], rowvar=False))
        if self.shift is not None and len(self.shift) >= MIN_RESTING:
            d = self.shift / scale
            parts.append(d.T @ d / len(d))  # uncentred: a systematic shift moves every face's score
        return sum(parts) if parts else None


def fit_linear(x: np.ndarray, y: np.ndarray, c: float, invariance: Invariance) -> tuple[np.ndarray, float]:
    """Weights (raw feature units) and intercept of a class-balanced, L2-regularised logistic regression of `y`
    on standardised `x`. With an `invariance` to estimate, the penalty is the score's spread over it (resting
    faces of different people, two views of one face) plus a ridge, instead of the weights' plain norm: directions
    that identity or a corpus's look move cost more, so the model reads what expressions change."""
    center, scale = standardise(x)
    z = (x - center) / scale
    whiten = np.eye(x.shape[1])
    spread = invariance.spread(z, scale)
    if spread is not None:
        values, vectors = np.linalg.eigh(spread + RESTING_RIDGE * np.eye(x.shape[1]))
        whiten = (vectors / np.sqrt(values)) @ vectors.T  # spread^-1/2: its L2 penalty is w' spread w
    model = LogisticRegression(C=c, solver="newton-cholesky", max_iter=200, class_weight="balanced")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(z @ whiten, y)
    weights = whiten @ model.coef_[0] / scale
    return weights, float(model.intercept_[0] - weights @ center)


def decision(x_train, y_train, x_test, c: float, invariance: Invariance) -> np.ndarray:
    weights, bias = fit_linear(x_train, y_train, c, invariance)
    return x_test @ weights + bias
