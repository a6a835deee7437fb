"""Learn an AU head from FACS-coded faces: one logistic model per AU, judged across subjects.

For every AU the corpus codes often enough, a standardised, penalised logistic regression over
the face features (blendshapes + mesh measures, appearance components) is fitted to the corpus occurrence
codes (pipeline/au/invariant_logistic.py: what the score must not change with costs more). Its
regularisation strength and its decision threshold (pipeline/au/thresholds.py: the F1-best cut, kept off
neutral faces) are chosen by
subject-disjoint cross-validation (GroupKFold: no subject in two folds), nested inside an outer
subject-disjoint cross-validation whose held-out predictions give the AU's reported F1, precision,
recall and correlation: figures for faces of people the head has never seen. The final model is
refitted on all faces with the settings chosen on all of them.

Intensity levels are fitted to coded FACS levels from the same held-out scores (pipeline/au/levels.py); an AU found
on too few graded faces starts its levels where the other AUs' found faces were graded (pooled).
An AU with fewer than `min_positives` coded positives (or negatives) keeps the base head's model
(the default head) and is listed as such. Faces whose corpus does not code an AU are left out of
that AU's model, never counted as negatives. Features that barely move in the calibration faces (spread below
MIN_SCALE), and base-head scores that barely move, are not learned from (`still_features` in the head file); a
still feature keeps only the weight the base head's own scores give it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from sklearn.model_selection import GroupKFold

from pipeline.au.appearance import PREFIX, Appearance
from pipeline.au.facs_scores import intervals, score_head
from pipeline.au.head import AUHead, intensity_from_score
from pipeline.au.invariant_logistic import MIN_SCALE, Invariance, decision, fit_linear
from pipeline.au.levels import MIN_FOUND, fit_levels, level_errors, pooled_level
from pipeline.au.thresholds import Rule, f1_precision_recall
from pipeline.au.training_data import FaceTable

C_GRID = (0.01, 0.03, 0.1, 0.3, 1.0)


@dataclass
class AUFit:
    code: str
    positives: int
    negatives: int
    fitted: bool
    reason: str = ""  # why not fitted
    cv: dict[str, float] = field(default_factory=dict)  # f1, precision, recall, correlation, C, threshold
    weights: np.ndarray | None = None  # logistic: per column of `x` (raw units); fit_head: every feature, then
    # one weight per base-head score (0 where a column was left out as still)
    bias: float = 0.0  # logistic: intercept; base-threshold: minus the re-chosen threshold
    kind: str = "base"  # base | base-threshold | logistic
    slope: float = 1.0  # intensity slope above the threshold, fitted to coded FACS levels (else the base head's)
    level_at: float = 1.0  # intensity just above the threshold, fitted with the slope (too few found: the
    # level pooled over the AUs that fitted theirs, fit_head; never graded: FACS level A)
    held_out: np.ndarray | None = None  # per face of the table: held-out score (> 0 present), NaN where not scored


def _oof_scores(x, y, groups, c: float, folds: int, invariance: Invariance) -> np.ndarray:
    scores = np.zeros(len(y))
    for train, test in GroupKFold(n_splits=folds).split(x, y, groups):
        if y[train].min() == y[train].max():  # a fold without both classes: no model, neutral scores
            scores[test] = 0.0
            continue
        scores[test] = decision(x[train], y[train], x[test], c, invariance.rows(train))
    return scores


def _choose(x, y, groups, rows, rule: Rule, folds: int, invariance: Invariance) -> tuple[float, float, float]:
    """(C, threshold, F1) chosen by subject-disjoint cross-validation on these faces."""
    best = (C_GRID[0], 0.0, -1.0)
    for c in C_GRID:
        threshold, f1 = rule.threshold(_oof_scores(x, y, groups, c, folds, invariance.rows(rows)), y, rows)
        if f1 > best[2]:
            best = (c, threshold, f1)
    return best


def _base_threshold_cv(score: np.ndarray, y: np.ndarray, groups: np.ndarray, rows, rule: Rule,
                       folds: int) -> float:
    """Held-out F1 of the base head's score with its threshold re-chosen on the training subjects."""
    pred = np.zeros(len(y), dtype=bool)
    for train, test in GroupKFold(n_splits=folds).split(score, y, groups):
        pred[test] = score[test] > rule.threshold(score[train], y[train], rows[train])[0]
    return f1_precision_recall(pred, y)[0]


def _select(x, base_score, y, groups, rows, rule: Rule, folds: int, allow_logistic: bool,
            invariance: Invariance) -> tuple[str, float, float]:
    """Which model to use for this AU on these faces, by subject-disjoint cross-validated F1: the base head with
    its threshold re-chosen by `rule` (one parameter: enough for rare AUs), or a logistic regression (when the AU
    is coded often enough). Returns (kind, C, threshold)."""
    options = [("base-threshold", _base_threshold_cv(base_score, y, groups, rows, rule, folds), 0.0,
                rule.threshold(base_score, y, rows)[0])]
    if allow_logistic:
        c, threshold, f1 = _choose(x, y, groups, rows, rule, folds, invariance)
        options.append(("logistic", f1, c, threshold))
    kind, _, c, threshold = max(options, key=lambda o: o[1])  # first of equals: the simplest model
    return kind, c, threshold


def _fitted_score(kind: str, c: float, threshold: float, x_train, y_train, invariance: Invariance, x_test,
                  base_test) -> np.ndarray:
    if kind == "logistic":
        return decision(x_train, y_train, x_test, c, invariance) - threshold
    return base_test - threshold


def fit_au(code: str, x: np.ndarray, base_score: np.ndarray, intensity: np.ndarray, groups: np.ndarray,
           min_positives: int, folds: int, min_recalibrate: int = 3, neutral: np.ndarray | None = None,
           graded: np.ndarray | None = None, neutral_rate: float = 0.01, base_slopes: tuple[float, float] = (1.0, 1.0),
           min_levels: int = 10, max_level_error: float = 1.0, shift: np.ndarray | None = None) -> AUFit:
    """Choose, score and fit the model of one AU. `x` holds the face features followed by the base head's
    scores (a prior: the base head's FACS knowledge costs the logistic model nothing to use), those that move in
    these faces (fit_head leaves the still ones out). Faces marked
    `neutral` are negatives the threshold must keep quiet (at most `neutral_rate` of them fire); the FACS
    levels of `graded` faces fit the intensity slope above the threshold. `base_slopes`: the base head's slopes
    (above, below the threshold); below it the AU keeps the base head's."""
    coded = ~np.isnan(intensity)
    table_rows = np.flatnonzero(coded)
    neutral = np.zeros(len(intensity), dtype=bool) if neutral is None else neutral
    graded = np.zeros(len(intensity), dtype=bool) if graded is None else graded
    x, base_score, intensity, groups = x[coded], base_score[coded], intensity[coded], groups[coded]
    neutral, graded = neutral[coded], graded[coded]
    rule = Rule(neutral, neutral_rate)
    invariance = Invariance(neutral, shift)
    rows = np.arange(len(intensity))
    y = intensity > 0
    positives, negatives = int(y.sum()), int((~y).sum())
    n_groups = len(set(groups.tolist()))
    folds = min(folds, n_groups)
    if min(positives, negatives) < min_recalibrate or folds < 3:
        why = (f"only {n_groups} subjects: cannot cross-validate" if folds < 3 else
               f"{positives} coded positives, {negatives} negatives (fewer than {min_recalibrate})")
        # Too rare to learn from, but the neutral faces still bound how often the base head may fire.
        cap = rule.cap(base_score[neutral]) if neutral.any() else 0.0
        if cap > 0:
            return AUFit(code, positives, negatives, False, why + "; threshold raised to keep neutral faces quiet",
                         bias=-cap, kind="base-threshold", slope=base_slopes[0])
        return AUFit(code, positives, negatives, False, why)
    allow_logistic = min(positives, negatives) >= min_positives
    # Outer subject-disjoint folds: the model chosen and fitted on the training subjects, scored on the others.
    held_out = np.zeros(len(y), dtype=bool)
    held_scores = np.zeros(len(y))
    for train, test in GroupKFold(n_splits=folds).split(x, y, groups):
        if y[train].sum() < 2 or (~y[train]).sum() < 2:
            continue
        inner = min(folds, len(set(groups[train].tolist())))
        kind, c, threshold = _select(x[train], base_score[train], y[train], groups[train], train, rule, inner,
                                     allow_logistic, invariance)
        held_scores[test] = _fitted_score(kind, c, threshold, x[train], y[train], invariance.rows(train), x[test],
                                          base_score[test])
        held_out[test] = True
    held_full = np.full(len(coded), np.nan)
    held_full[table_rows[held_out]] = held_scores[held_out]
    expressive = held_out & ~neutral  # F1 is about faces that show something; neutral faces get their own rate
    f1, precision, recall = f1_precision_recall(held_scores[expressive] > 0, y[expressive])
    correlation = float(np.corrcoef(held_scores[held_out], intensity[held_out])[0, 1]) if held_out.sum() > 2 else 0.0
    levels = held_out & graded & y
    slope, level_at, level_error, found_error, level_corr = fit_levels(held_scores[levels], intensity[levels],
                                                                       *base_slopes)
    found_levels = levels & (held_scores > 0)
    # Final model: chosen on all faces, fitted on all faces.
    kind, c, threshold = _select(x, base_score, y, groups, rows, rule, folds, allow_logistic, invariance)
    cv = {"f1": round(f1, 4), "precision": round(precision, 4), "recall": round(recall, 4),
          "correlation": round(0.0 if np.isnan(correlation) else correlation, 4), "model": kind,
          "faces": int(expressive.sum())}
    if (held_out & neutral).any():
        cv["neutral_faces"] = int((held_out & neutral).sum())
        cv["neutral_rate"] = round(float((held_scores[held_out & neutral] > 0).mean()), 4)
    if levels.any():
        cv |= {"levels": int(levels.sum()), "intensity_mae": round(level_error, 3),
               "levels_found": int(found_levels.sum()),
               "intensity_mae_found": None if np.isnan(found_error) else round(found_error, 3),
               "intensity_correlation": None if np.isnan(level_corr) else round(level_corr, 3)}
    # Levels are stated only where the AU was graded often enough and the head's levels, where it finds the AU,
    # are within `max_level_error` of the coders'.
    cv["intensity_supported"] = bool(found_levels.sum() >= min_levels and found_error <= max_level_error)
    if kind != "logistic":
        return AUFit(code, positives, negatives, True, cv=cv, weights=None, bias=-threshold, kind=kind, slope=slope,
                     level_at=level_at, held_out=held_full)
    weights, bias = fit_linear(x, y, c, invariance)
    bias -= threshold
    return AUFit(code, positives, negatives, True, cv={**cv, "C": c}, weights=weights, bias=bias, kind=kind,
                 slope=slope, level_at=level_at, held_out=held_full)


def fit_head(faces: FaceTable, base: AUHead, name: str = "fea-calibrated", min_positives: int = 10,
             folds: int = 5, neutral_rate: float = 0.01, meta: dict[str, Any] | None = None,
             appearance_components: int = 0, views: tuple[FaceTable, FaceTable] | None = None
             ) -> tuple[AUHead, list[AUFit]]:
    """A head learned from `faces`: per AU, the model that cross-validates best among a logistic regression
    (AUs coded at least `min_positives` times) and the base head with a re-chosen threshold; thresholds keep
    each AU off all but `neutral_rate` of the neutral faces; intensity slopes fit the coded FACS levels.
    `meta` adds provenance (the command, the corpus terms) to the head file. With `appearance_components` k > 0
    the faces' crop appearance (read with `read_faces(appearance=True)`) joins the features as its first k
    principal components, the projection learned on these faces without their labels and kept in the head.
    `views`: the same faces seen two ways (paired row by row, no labels needed, `read_views`); the learned scores
    are penalised for differing between the two (see `Invariance`)."""
    if not np.isfinite(faces.labels).any():
        raise ValueError("the builds carry no corpus AU codes (au_label_intensity): calibration needs a FACS-coded "
                         "corpus (ckplus, disfa, disfaplus, bp4d, rafau adapters, or csv/jsonl with au_column)")
    groups = np.array(faces.groups)
    # Appearance: the base head's projection when it has one (its `app:` features then mean the same here),
    # else one learned on these faces when asked for.
    appearance = base.appearance
    if appearance is None and appearance_components > 0:
        if faces.descriptors is None:
            raise ValueError("appearance features asked for, but the faces were read without them")
        appearance = Appearance.learn(faces.descriptors, appearance_components)

    def with_appearance(table: FaceTable) -> FaceTable:
        if appearance is None:
            return table
        if table.descriptors is None:
            raise ValueError("the head reads the aligned crops' appearance (--appearance K, or a base head that "
                             "does): read the faces with it (read_faces(appearance=True))")
        return replace(table, feature_names=[*table.feature_names, *appearance.names],
                       features=np.concatenate([table.features, appearance.project(table.descriptors)], axis=1))

    faces = with_appearance(faces)
    unknown = [f for f in base.features if f not in faces.feature_names]
    if unknown:
        raise ValueError(f"the base head reads features the builds do not record: {unknown[:5]}")
    features = list(faces.feature_names)
    # The base head in the builds' feature space; its scores join the features as a prior for the logistic models.
    base_weights = np.zeros((len(base.codes), len(features)))
    base_weights[:, [features.index(f) for f in base.features]] = base.weights
    base_rows = [base.codes.index(c) for c in faces.codes]
    base_scores = faces.features @ base_weights[base_rows].T + base.bias[base_rows]
    # A feature (or a base-head score) that barely moves in these faces (MediaPipe's cheekPuff, jawLeft, mouthClose
    # on 48 px CK+ faces; the base head's AU34, cheek puff) cannot be learned from: its weight would fit noise, and
    # read photos where it does move as AU evidence.
    augmented = np.concatenate([faces.features, base_scores], axis=1)
    names = features + [f"base:{code}" for code in faces.codes]
    live = np.flatnonzero(augmented.std(axis=0) >= MIN_SCALE)
    still = [names[i] for i in np.setdiff1d(np.arange(len(names)), live)]
    augmented = augmented[:, live]
    shift = None
    if views is not None:
        first, second = (with_appearance(view).features for view in views)
        if first.shape[1] != len(features) or second.shape[1] != len(features):
            raise ValueError("the paired views record other face features than the calibration builds")
        difference = second - first
        shift = np.concatenate([difference, difference @ base_weights[base_rows].T], axis=1)[:, live]
    weights = np.zeros((len(faces.codes), len(features)))
    bias = np.zeros(len(faces.codes))
    slope = np.ones(len(faces.codes))
    slope_below = np.array([base.slope_below[b] for b in base_rows], dtype=np.float64)
    level_at = np.array([base.level_at[b] for b in base_rows], dtype=np.float64)
    origin: dict[str, str] = {}
    quality: dict[str, dict[str, Any]] = {}
    fits = [fit_au(code, augmented, base_scores[:, row], faces.labels[:, row], groups, min_positives, folds,
                   neutral=faces.neutral, graded=faces.graded[:, row], neutral_rate=neutral_rate,
                   base_slopes=(float(base.slope[b]), float(base.slope_below[b])), shift=shift)
            for row, (code, b) in enumerate(zip(faces.codes, base_rows, strict=True))]
    _pool_rare_levels(faces, fits, slope_below)
    for row, (code, result) in enumerate(zip(faces.codes, fits, strict=True)):
        b = base_rows[row]
        support = {"positives": result.positives, "negatives": result.negatives}
        if result.kind == "logistic":
            learned = np.zeros(len(names))
            learned[live] = result.weights
            result.weights = learned  # in the full space: every feature, then every base-head score
            direct, prior = learned[: len(features)], learned[len(features):]
            weights[row] = direct + prior @ base_weights[base_rows]
            bias[row] = result.bias + prior @ base.bias[base_rows]
            slope[row], level_at[row] = result.slope, result.level_at
            origin[code] = "fitted"
        else:  # the base head's model, its threshold re-chosen when that scored better
            weights[row], bias[row] = base_weights[b], base.bias[b] + result.bias
            slope[row] = result.slope if result.fitted else base.slope[b]
            level_at[row] = result.level_at if result.fitted else base.level_at[b]
            origin[code] = {"base-threshold": f"recalibrated:{base.tag}"}.get(result.kind, f"base:{base.tag}")
        if result.fitted:
            quality[code] = {**result.cv, **support, "source": "subject-disjoint cross-validation"}
        else:
            quality[code] = {**base.quality.get(code, {}), **support, "kept_base": result.reason}
    weights = np.round(weights, 8)  # the precision the head file keeps: a weight that rounds to 0 is not used
    used = np.flatnonzero(np.abs(weights).sum(axis=0) > 0)
    head = AUHead(
        name=name, version="", codes=list(faces.codes), features=[features[i] for i in used],
        weights=weights[:, used], bias=bias, slope=slope, slope_below=slope_below, level_at=level_at,
        supersedes=dict(base.supersedes), origin=origin, quality=quality,
        appearance=appearance if appearance is not None and any(f.startswith(PREFIX) for f in
                                                                  (features[i] for i in used)) else None,
        meta={"description": __doc__.split("\n\n")[0].replace("\n", " "), "method": "fitted",
              "fitted_on": [f"{source} ({count} faces)" for source, count in _sources(faces)],
              "base": base.tag, "min_positives": min_positives, "folds": folds,
              "faces": len(faces.features), "subjects": len(set(faces.groups)),
              "neutral_faces": int(faces.neutral.sum()), "neutral_rate": neutral_rate,
              "appearance_components": 0 if appearance is None else len(appearance.axes),
              "still_features": still,
              "view_pairs": 0 if shift is None else len(shift),
              **({"views_from": [f"{', '.join(sorted(set(view.sources)))} ({len(view.sources)} faces)"
                                 for view in views]} if views is not None else {}),
              "quality_source": "subject-disjoint cross-validation on the calibration builds",
              **(meta or {})},
    )
    head.meta["summary"] = summarise(faces, fits, head)
    for code, bounds in head.meta["summary"].get("intervals", {}).pop("f1_by_au", {}).items():
        head.quality[code]["f1_interval"] = bounds  # beside the AU's F1, where the card and report read it
    digest = hashlib.sha256(json.dumps([head.content_version(), head.meta["fitted_on"]]).encode()).hexdigest()
    head.version = f"fit-{digest[:12]}"
    return head, fits


def _pool_rare_levels(faces: FaceTable, fits: list[AUFit], slope_below: np.ndarray) -> None:
    """Learned AUs found on fewer than MIN_FOUND graded faces (and graded at least once) start their levels at
    `pooled_level` of the found faces of the AUs that fitted their own (in place: the fits' `level_at` and level
    figures in `cv`). The rare AUs' own levels stay out of the pool, so their reported level error is still a
    figure for levels they did not set. Without graded levels in the corpus nothing changes."""
    own, rare = [], []
    for row, fit in enumerate(fits):
        if not fit.fitted or fit.held_out is None:
            continue
        graded = faces.graded[:, row] & (faces.labels[:, row] > 0) & np.isfinite(fit.held_out)
        found = graded & (fit.held_out > 0)
        if found.sum() >= MIN_FOUND:
            own.append(faces.labels[found, row])
        elif graded.any():  # an AU no corpus grades keeps level A: nothing says how its coders would grade it
            rare.append((row, fit, graded))
    if not own or not rare:
        return
    level = pooled_level(np.concatenate(own))
    for row, fit, graded in rare:
        fit.level_at = level
        error, found_error, corr = level_errors(fit.held_out[graded], faces.labels[graded, row], fit.slope,
                                                slope_below[row], level)
        figures = {"levels_from": f"pooled: the level found AUs of this corpus were graded at ({len(own)} AU"
                                  f"{'s' if len(own) > 1 else ''})",
                   "intensity_mae": round(error, 3),
                   "intensity_mae_found": None if np.isnan(found_error) else round(found_error, 3),
                   "intensity_correlation": None if np.isnan(corr) else round(corr, 3)}
        fit.cv |= figures


def summarise(faces: FaceTable, fits: list[AUFit], head: AUHead) -> dict[str, Any]:
    """Head-level held-out figures (pipeline/au/facs_scores.py) from the held-out scores of the AUs that have
    their own: mean F1, AUs per neutral face and the share with none, the error against every graded level, and
    their 95% intervals over the people they were measured on."""
    intensity = np.full(faces.labels.shape, np.nan)
    for f in fits:
        if f.fitted and f.held_out is not None:
            row = faces.codes.index(f.code)
            scored = np.isfinite(f.held_out)
            intensity[scored, row] = intensity_from_score(f.held_out[scored], head.slope[row], head.slope_below[row],
                                                          head.level_at[row])
    figures = score_head(faces, intensity, min_support=0)
    figures.pop("aus")
    return figures | {"intervals": intervals(faces, intensity, min_support=0)}


def _sources(faces: FaceTable) -> list[tuple[str, int]]:
    counts: dict[str, int] = {}
    for source, coded in zip(faces.sources, np.isfinite(faces.labels).any(axis=1), strict=True):
        if coded:
            counts[source] = counts.get(source, 0) + 1
    return sorted(counts.items())
