"""FACS appearance changes as scale-free geometric measures on the 478-point face mesh.

The measures are data (mesh_measures.json, param `au.measures`): each names mesh points and a kind (distance,
height on the face's up axis, ratio); lengths are divided by a rigid length of the face (the
inter-ocular distance for horizontal ones, the nose length for vertical ones), so face size, in-plane
rotation and, mostly, turning the head do not change them. Computed once per face by the AU stage and written to the
record (`face_measures`), so a head can be learned from a build later (`fea calibrate`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

KINDS = ("distance", "height", "ratio")
NUM_MESH_POINTS = 478


def _point(spec: int | list[int]) -> list[int]:
    indices = [spec] if isinstance(spec, int) else list(spec)
    if not indices or not all(isinstance(i, int) and 0 <= i < NUM_MESH_POINTS for i in indices):
        raise ValueError(f"a mesh point is an index in [0, {NUM_MESH_POINTS}) or a list of them, not {spec!r}")
    return indices


def _averaging_matrix(points: list[list[int]]) -> np.ndarray:
    """(len(points), 478) matrix whose product with the mesh gives each point (the mean of its indices)."""
    matrix = np.zeros((len(points), NUM_MESH_POINTS), dtype=np.float64)
    for row, indices in enumerate(points):
        matrix[row, indices] = 1.0 / len(indices)
    return matrix


@dataclass
class MeshMeasures:
    names: list[str]
    kinds: list[str]
    version: str
    _first: np.ndarray  # (P, 478): the first point of every pair of every measure
    _second: np.ndarray  # (P, 478)
    _owner: np.ndarray  # (P,) which measure a pair belongs to; ratio numerators and denominators are split below
    _is_denominator: np.ndarray  # (P,) bool
    _norm_points: np.ndarray  # (N, 2) the two points of each norm
    _norm_of: np.ndarray  # (len(names),) which norm divides each measure (-1: a ratio, no norm)
    _up: tuple[int, int]

    @classmethod
    def load(cls, path: str | Path) -> MeshMeasures:
        spec = json.loads(Path(path).read_text())
        norms = {name: [_point(p)[0] for p in pair] for name, pair in spec["norms"].items()}
        names, kinds, first, second, owner, denominator, norm_of = [], [], [], [], [], [], []
        for index, (name, measure) in enumerate(spec["measures"].items()):
            kind = measure.get("kind")
            if kind not in KINDS:
                raise ValueError(f"{path}: measure {name}: kind must be one of {KINDS}, not {kind!r}")
            if kind == "ratio":
                if len(measure.get("num") or []) != len(measure.get("den") or []):
                    raise ValueError(f"{path}: measure {name}: a ratio needs as many num as den pairs (one per side)")
                norm_of.append(-1)
            elif measure.get("norm") in norms:
                norm_of.append(list(norms).index(measure["norm"]))
            else:
                raise ValueError(f"{path}: measure {name}: norm must be one of {list(norms)}, "
                                 f"not {measure.get('norm')!r}")
            groups = [(measure.get("num"), False), (measure.get("den"), True)] if kind == "ratio" else [
                (measure.get("pairs"), False)]
            for pairs, is_den in groups:
                if not pairs:
                    raise ValueError(f"{path}: measure {name} lists no point pairs")
                for pair in pairs:
                    if len(pair) != 2:
                        raise ValueError(f"{path}: measure {name}: {pair!r} is not a pair of points")
                    first.append(_point(pair[0]))
                    second.append(_point(pair[1]))
                    owner.append(index)
                    denominator.append(is_den)
            names.append(name)
            kinds.append(kind)
        return cls(names, kinds, f"mesh-measures@{spec['version']}", _averaging_matrix(first),
                   _averaging_matrix(second), np.array(owner), np.array(denominator),
                   np.array(list(norms.values()), dtype=np.int64), np.array(norm_of), tuple(spec["up"]))

    def __getstate__(self) -> dict:
        # The averaging matrices are nearly all zeros: pickled by their non-zero entries, since the measures
        # travel to every worker (in the knowledge and the measure stage).
        state = dict(self.__dict__)
        for key in ("_first", "_second"):
            rows, cols = np.nonzero(state[key])
            state[key] = (state[key].shape, rows, cols, state[key][rows, cols])
        return state

    def __setstate__(self, state: dict) -> None:
        for key in ("_first", "_second"):
            shape, rows, cols, values = state[key]
            state[key] = np.zeros(shape, dtype=np.float64)
            state[key][rows, cols] = values
        self.__dict__.update(state)

    def compute(self, mesh: np.ndarray) -> np.ndarray:
        """(478, 3) mesh in pixel units -> (len(names),) float32 measures."""
        mesh = np.asarray(mesh, dtype=np.float64)
        if mesh.shape != (NUM_MESH_POINTS, 3):
            raise ValueError(f"expected a (478, 3) mesh, got {mesh.shape}")
        norms = np.linalg.norm(mesh[self._norm_points[:, 0]] - mesh[self._norm_points[:, 1]], axis=1)
        if not (norms > 0).all():
            raise ValueError("degenerate mesh: a reference length of the face is zero")
        across = mesh[self._norm_points[0, 1]] - mesh[self._norm_points[0, 0]]  # the eye line (first norm)
        across /= np.linalg.norm(across)
        up = mesh[self._up[1]] - mesh[self._up[0]]
        up = up - across * float(up @ across)  # the face's up axis, orthogonal to the eye line
        up /= np.linalg.norm(up)
        diff = self._first @ mesh - self._second @ mesh  # (P, 3)
        lengths = np.linalg.norm(diff, axis=1)
        heights = diff @ up
        out = np.zeros(len(self.names), dtype=np.float64)
        for index, kind in enumerate(self.kinds):
            mine = self._owner == index
            if kind == "ratio":  # per side, then the mean of the sides
                num, den = lengths[mine & ~self._is_denominator], lengths[mine & self._is_denominator]
                out[index] = float(np.mean(num / np.maximum(den, 1e-9)))
            else:
                value = heights[mine] if kind == "height" else lengths[mine]
                out[index] = value.mean() / norms[self._norm_of[index]]
        return out.astype(np.float32)
