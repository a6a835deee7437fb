"""An AU head: per-AU linear scores over the face features, read from a versioned JSON file.

Features are what the face stage measures: the 52 MediaPipe blendshapes (`bs:<name>`) and the mesh
measures (`mesh:<name>`, pipeline/au/measures.py), and for a head that carries an appearance projection
(pipeline/au/appearance.py) the principal components of the aligned crop's gradients (`app:pc<i>`). For each
AU the head holds a weight per feature and a bias, in the features' own units:

    score     = bias + sum(weight * feature)            > 0  <=>  the AU is present
    intensity = 5 * sigmoid(slope * score - ln 4)        0-5; exactly 1.0 (FACS level A) at score 0

`slope` applies above the threshold and may be fitted to coded FACS levels (A-E = 1-5, `fea calibrate`);
`slope_below` (default: `slope`) keeps the evidence's order below it. A fitted head may also start an AU's
levels higher than A (`level_at_threshold`, default 1.0): above the threshold the intensity is then
5 * sigmoid(slope * score + logit(level / 5)), from that level towards 5, as coders grade a barely found AU.

so `intensity >= 1` is the occurrence rule, intensity grows smoothly with the evidence towards 5
(level E), and below the threshold it keeps the evidence's order instead of clipping it to 0.
An AU may supersede others (FACS: a stretched mouth, AU27, is scored instead of a jaw drop, AU26):
where it is present, they are held just below the occurrence threshold.
A head is a function of the face alone: nothing about labels, corpus or file name reaches it.

Two kinds of head share the format: the default (au_head.json, derived from FACS knowledge by
pipeline/au/default_head.py) and heads learned from FACS-coded builds by `fea calibrate`
(pipeline/au/fit.py). The file also says where each AU's model came from and how well it is known
to work (`quality`), which the dataset card and report repeat.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.au.appearance import Appearance, descriptor

FORMAT = "fea-au-head/1"
INTENSITY_MAX = 5.0
PRESENT_AT = 1.0  # intensity at score 0: FACS level A
SUPERSEDED = 0.99  # where an AU is superseded by another, its intensity is held just below PRESENT_AT
_OFFSET = float(np.log(INTENSITY_MAX / PRESENT_AT - 1.0))  # 5 * sigmoid(-ln 4) = 1
INTENSITY_SCALE = ("0-5 continuous = 5 x sigmoid(slope x score - ln 4) of the AU head's score: 1.0 (FACS level A) "
                   "at the occurrence threshold, towards 5 (level E) with stronger evidence; below 1 = not present. "
                   "Above the threshold an AU may start from the level coders give a barely present AU "
                   "(level_at_threshold, fitted to coded FACS levels)")


class HeadError(ValueError):
    """The head file is unusable with this vocabulary or these features; the message says why."""


def blendshape_feature(name: str) -> str:
    return f"bs:{name}"


def measure_feature(name: str) -> str:
    return f"mesh:{name}"


def feature_names(blendshape_names: list[str] | tuple[str, ...], measure_names: list[str]) -> list[str]:
    """The order of the face feature vector: blendshapes, then mesh measures."""
    return [blendshape_feature(n) for n in blendshape_names] + [measure_feature(n) for n in measure_names]


@dataclass
class AUHead:
    name: str
    version: str
    codes: list[str]  # AU vocabulary order
    features: list[str]  # the head's inputs, by name
    weights: np.ndarray  # (n_aus, n_features), in the features' own units
    bias: np.ndarray  # (n_aus,)
    slope: np.ndarray  # (n_aus,) above the threshold
    supersedes: dict[str, list[str]] = field(default_factory=dict)  # AU -> AUs it replaces when present
    origin: dict[str, str] = field(default_factory=dict)  # AU -> how its model was made
    quality: dict[str, dict[str, Any]] = field(default_factory=dict)  # AU -> known accuracy (f1, support, ...)
    meta: dict[str, Any] = field(default_factory=dict)  # description, method, fitted_on, ...
    slope_below: np.ndarray | None = None  # (n_aus,) below the threshold; None = `slope`
    appearance: Appearance | None = None  # the crop's appearance projection, when the head reads `app:` features
    level_at: np.ndarray | None = None  # (n_aus,) intensity just above the threshold; None = 1.0 (FACS level A)
    _columns: np.ndarray | None = None  # positions of `features` in the face feature vector, once bound

    def __post_init__(self) -> None:
        if self.slope_below is None:
            self.slope_below = np.array(self.slope, dtype=np.float64)
        if self.level_at is None:
            self.level_at = np.full(len(self.codes), PRESENT_AT)

    @property
    def tag(self) -> str:
        return f"{self.name}@{self.version}"

    @cached_property  # read for every rendered face; a head's quality does not change once loaded
    def graded_codes(self) -> frozenset[str]:
        """The AUs whose intensity levels the head supports (`intensity_supported` in its quality: enough faces
        graded by FACS coders, and its levels within a level of theirs). Answers state levels for these only."""
        return frozenset(code for code, q in self.quality.items() if q.get("intensity_supported"))

    @property
    def fitted_on(self) -> list[str]:
        return list(self.meta.get("fitted_on", []))

    def summary(self) -> dict[str, Any]:
        """What the manifest and dataset card say about the head: its name, version, origin and known accuracy."""
        return {"name": self.name, "version": self.version, "method": self.meta.get("method"),
                "fitted_on": self.fitted_on, "origin": self.origin, "quality": self.quality,
                "quality_source": self.meta.get("quality_source"), "summary": self.meta.get("summary"),
                "terms": self.meta.get("terms")}

    # -- reading and writing ------------------------------------------------------------------------------

    @classmethod
    def load(cls, path: str | Path, codes: list[str]) -> AUHead:
        path = Path(path)
        try:
            spec = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise HeadError(f"AU head {path}: cannot read it: {exc}") from None
        if spec.get("format") != FORMAT:
            raise HeadError(f"AU head {path}: format {spec.get('format')!r}, expected {FORMAT!r}")
        return cls.from_dict(spec, codes, where=str(path))

    @classmethod
    def from_dict(cls, spec: dict[str, Any], codes: list[str], where: str = "AU head") -> AUHead:
        aus = spec.get("aus", {})
        missing = [c for c in codes if c not in aus]
        if missing:
            raise HeadError(f"{where}: no model for vocabulary AU(s) {', '.join(missing)}")
        features = sorted({f for c in codes for f in aus[c].get("weights", {})})
        weights = np.zeros((len(codes), len(features)), dtype=np.float64)
        for row, code in enumerate(codes):
            for name, value in aus[code].get("weights", {}).items():
                weights[row, features.index(name)] = float(value)
        bias = np.array([float(aus[c]["bias"]) for c in codes])
        slope = np.array([float(aus[c].get("slope", 1.0)) for c in codes])
        below = np.array([float(aus[c].get("slope_below", aus[c].get("slope", 1.0))) for c in codes])
        level_at = np.array([float(aus[c].get("level_at_threshold", PRESENT_AT)) for c in codes])
        if not np.isfinite(weights).all() or not np.isfinite(bias).all() or not (slope > 0).all() \
                or not (below > 0).all():
            raise HeadError(f"{where}: weights and biases must be finite and slopes positive")
        if not ((level_at >= PRESENT_AT) & (level_at < INTENSITY_MAX)).all():
            raise HeadError(f"{where}: level_at_threshold must be at least {PRESENT_AT} and below {INTENSITY_MAX}")
        meta = {k: v for k, v in spec.items()
                if k not in ("format", "name", "version", "aus", "quality", "appearance")}
        try:
            appearance = Appearance.from_dict(spec["appearance"], where) if spec.get("appearance") else None
        except (KeyError, TypeError, ValueError) as exc:
            raise HeadError(f"{where}: unusable appearance projection: {exc}") from None
        supersedes = {c: list(aus[c]["supersedes"]) for c in codes if aus[c].get("supersedes")}
        unknown = sorted({s for targets in supersedes.values() for s in targets} - set(codes))
        if unknown:
            raise HeadError(f"{where}: supersedes AU(s) outside the vocabulary: {', '.join(unknown)}")
        return cls(spec["name"], str(spec["version"]), list(codes), features, weights, bias, slope,
                   supersedes=supersedes, origin={c: aus[c].get("origin", "unknown") for c in codes},
                   quality={c: dict(q) for c, q in spec.get("quality", {}).items()}, meta=meta, slope_below=below,
                   appearance=appearance, level_at=level_at)

    def to_dict(self) -> dict[str, Any]:
        aus = {}
        for row, code in enumerate(self.codes):
            nonzero = {f: round(float(w), 8) + 0.0 for f, w in zip(self.features, self.weights[row], strict=True)
                       if w != 0}
            aus[code] = {"origin": self.origin.get(code, "unknown"), "bias": round(float(self.bias[row]), 8) + 0.0,
                         "slope": round(float(self.slope[row]), 6),
                         **({"slope_below": round(float(self.slope_below[row]), 6)}
                            if self.slope_below[row] != self.slope[row] else {}),
                         **({"level_at_threshold": round(float(self.level_at[row]), 6)}
                            if self.level_at[row] != PRESENT_AT else {}),
                         "weights": nonzero,
                         **({"supersedes": self.supersedes[code]} if code in self.supersedes else {})}
        return {"format": FORMAT, "name": self.name, "version": self.version, **self.meta, "aus": aus,
                "quality": self.quality,
                **({"appearance": self.appearance.to_dict()} if self.appearance is not None else {})}

    def write(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        spec = self.to_dict()
        appearance = spec.pop("appearance", None)
        text = json.dumps(spec, indent=1)
        if appearance is not None:  # tens of thousands of numbers: one line per axis, not one per number
            rows = ",\n  ".join(json.dumps(row, separators=(",", ":")) for row in appearance["axes"])
            text = (text[:-2] + f',\n "appearance": {{"descriptor": {json.dumps(appearance["descriptor"])},\n  '
                    f'"mean": {json.dumps(appearance["mean"], separators=(",", ":"))},\n  "axes": [\n  {rows}]}}\n}}')
        path.write_text(text + "\n")
        return path

    def content_version(self) -> str:
        """A version derived from what the head computes (weights, biases, slopes, features, AUs)."""
        blob = json.dumps([self.codes, self.features, _kept(self.weights, 8), _kept(self.bias, 8),
                           _kept(self.slope, 6), sorted(self.supersedes.items())]
                          + ([_kept(self.slope_below, 6)] if (self.slope_below != self.slope).any() else [])
                          + ([_kept(self.level_at, 6)] if (self.level_at != PRESENT_AT).any() else [])
                          + ([self.appearance.to_dict()] if self.appearance is not None else []))
        return hashlib.sha256(blob.encode()).hexdigest()[:12]

    # -- applying -----------------------------------------------------------------------------------------

    def bind(self, available: list[str]) -> AUHead:
        """Check that the face feature vector (names in order) holds every input; remember where they are.
        A head with an appearance projection appends its components to the vector (`inputs`)."""
        available = list(available) + (self.appearance.names if self.appearance is not None else [])
        unknown = [f for f in self.features if f not in available]
        if unknown:
            raise HeadError(f"AU head {self.tag} needs feature(s) the face stage does not measure: "
                            f"{', '.join(unknown[:8])} (check the mesh measures, au.measures)")
        self._columns = np.array([available.index(f) for f in self.features], dtype=np.int64)
        return self

    def inputs(self, features: np.ndarray, crop_jpegs: bytes | list[bytes] | None = None,
               descriptors: np.ndarray | None = None) -> np.ndarray:
        """The head's input vector(s): the face features (blendshapes, measures), followed, for a head with an
        appearance projection, by its components of the aligned crop (its JPEG bytes, or their descriptors)."""
        if self.appearance is None:
            return np.asarray(features, dtype=np.float64)
        if descriptors is None:
            if crop_jpegs is None:
                raise HeadError(f"AU head {self.tag} reads the aligned crop's appearance: give the crop")
            single = isinstance(crop_jpegs, bytes)
            descriptors = np.stack([descriptor(b) for b in ([crop_jpegs] if single else crop_jpegs)])
            descriptors = descriptors[0] if single else descriptors
        return np.concatenate([np.asarray(features, dtype=np.float64), self.appearance.project(descriptors)], axis=-1)

    def scores(self, features: np.ndarray) -> np.ndarray:
        """(..., n_available) face feature vector(s) -> (..., n_aus) scores (> 0: present)."""
        if self._columns is None:
            raise RuntimeError("AUHead.bind() first")
        x = np.asarray(features, dtype=np.float64)[..., self._columns]
        return x @ self.weights.T + self.bias

    def intensities(self, features: np.ndarray) -> np.ndarray:
        intensity = intensity_from_score(self.scores(features), self.slope, self.slope_below, self.level_at)
        for code, replaced in self.supersedes.items():
            present = intensity[..., self.codes.index(code)] >= PRESENT_AT
            for other in replaced:
                column = intensity[..., self.codes.index(other)]
                intensity[..., self.codes.index(other)] = np.where(present, np.minimum(column, SUPERSEDED), column)
        return intensity

    def present(self, intensity: np.ndarray) -> list[str]:
        return [code for code, value in zip(self.codes, intensity, strict=True) if value >= PRESENT_AT]


def _kept(values: np.ndarray, digits: int) -> list:
    """Values at the precision the head file keeps, -0.0 written as 0.0: a weight of -1e-12 from one run's
    rounding noise and +1e-12 from another's are the same head, and must give the same version."""
    return (np.round(np.asarray(values, dtype=np.float64), digits) + 0.0).tolist()


def intensity_from_score(score: np.ndarray, slope: np.ndarray | float = 1.0,
                         slope_below: np.ndarray | float | None = None,
                         level_at: np.ndarray | float = PRESENT_AT) -> np.ndarray:
    score = np.asarray(score, dtype=np.float64)
    below = slope if slope_below is None else slope_below
    offset_above = np.log(INTENSITY_MAX / np.asarray(level_at, dtype=np.float64) - 1.0)
    z = np.where(score > 0, np.asarray(slope) * score - offset_above, np.asarray(below) * score - _OFFSET)
    z = np.clip(z, -50.0, 50.0)
    return (INTENSITY_MAX / (1.0 + np.exp(-z))).astype(np.float32)
