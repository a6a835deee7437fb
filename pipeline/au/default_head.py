"""The default AU head, derived from FACS knowledge and a reference population, without AU labels.

The head spec (the packaged au_head_spec.json) says, for each AU, which face features show it and with which sign (FACS
appearance changes: the blendshapes that move the same muscles and the mesh measures of
mesh_measures.json), and one rule for all AUs: an AU is present when the mean of its signed
evidence lies `tau` robust standard deviations above the reference population's median. The
reference population is one or more builds of unposed, mostly resting faces; its per-feature median
and spread (1.4826 x MAD, at least `min_scale`) are fixed in the head file, so a face's AUs never
depend on the other faces of a build.

    python -m pipeline.au.default_head build/fitw build/demo   # au_head_spec.json -> au_head_prior.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.au.head import AUHead
from pipeline.au.training_data import FaceTable, read_faces


def robust_scale(x: np.ndarray, min_scale: np.ndarray) -> np.ndarray:
    """1.4826 x the median absolute deviation (the standard deviation, for normal data), at least `min_scale`."""
    return np.maximum(1.4826 * np.median(np.abs(x - np.median(x, axis=0)), axis=0), min_scale)


def derive(spec: dict[str, Any], faces: FaceTable, codes: list[str]) -> AUHead:
    """The head that `spec` describes, with its rest levels and scales measured on `faces`.

    A term's rest level is the `rest_quantile` of its feature in the reference population, taken from the
    side the AU moves away from (the low quantile for a feature the AU raises, the high one for a feature it
    lowers): unposed photos often show a little of an expression (parted lips, a smile), so the median would
    place "rest" inside common AUs."""
    min_scale = np.array([spec["min_scale"][name.split(":", 1)[0]] for name in faces.feature_names])
    scale = robust_scale(faces.features, min_scale)
    q = float(spec["rest_quantile"])
    rest_low, rest_high = np.quantile(faces.features, [q, 1.0 - q], axis=0)
    tau, slope = float(spec["tau"]), float(spec["slope"])
    top = np.quantile(faces.features, 0.99, axis=0)
    dead = {name for name, value, floor in zip(faces.feature_names, top, min_scale, strict=True) if value < floor}
    dropped: dict[str, str] = {}
    weights = np.zeros((len(codes), len(faces.feature_names)))
    # An AU may need more evidence than the common rule (`tau` of its own: AU27 is AU26's jaw opening, stretched).
    bias = np.array([-float(spec["aus"].get(c, {}).get("tau", tau)) for c in codes])
    for row, code in enumerate(codes):
        terms = spec["aus"].get(code, {}).get("terms")
        if not terms:
            raise ValueError(f"head spec: no terms for {code}")
        # A feature that never leaves its floor in the reference population (MediaPipe's noseSneer and cheekSquint
        # on real photos) cannot carry evidence: its term is dropped, unless it is the AU's only one.
        live = {n: w for n, w in terms.items() if n not in dead} or terms
        dropped.update({n: code for n in terms if n not in live})
        terms = live
        norm = sum(abs(w) for w in terms.values())
        # A term's z-score is read from the resting side of the AU it shows; an explaining feature belongs to a
        # neighbouring AU that raises it, so its rest is the low side and only its presence takes evidence away.
        signed = [(name, w, w > 0) for name, w in terms.items()]
        signed += [(name, -v, True) for name, v in spec["aus"][code].get("explained_by", {}).items()]
        for name, w, low_side in signed:
            if name not in faces.feature_names:
                raise ValueError(f"head spec: {code} uses unknown feature {name!r}")
            col = faces.feature_names.index(name)
            rest = rest_low[col] if low_side else rest_high[col]
            # weighted z-scores (x - rest) / scale, folded into weights and bias in raw units
            weights[row, col] += w / norm / scale[col]
            bias[row] -= w / norm * rest / scale[col]
    keep = np.flatnonzero(np.abs(weights).sum(axis=0) > 0)
    head = AUHead(
        name=spec["name"], version="", codes=codes, features=[faces.feature_names[i] for i in keep],
        weights=weights[:, keep], bias=bias, slope=np.full(len(codes), slope),
        supersedes={c: list(spec["aus"][c]["supersedes"]) for c in codes if spec["aus"][c].get("supersedes")},
        origin={c: "knowledge" for c in codes},
        quality={c: dict(known) for c, known in spec.get("quality", {}).items()},
        meta={"description": spec["description"], "method": "knowledge",
              "spec_version": spec["version"], "tau": tau, "rest_quantile": q,
              "reference": {"builds": [Path(b).name for b in faces.builds], "faces": len(faces.features)},
              "dead_features": sorted(dead),
              "fitted_on": []},
    )
    head.version = f"{spec['version']}+{head.content_version()}"
    return head


def main(argv: list[str] | None = None) -> None:
    from pipeline.domain.data import data_file
    from pipeline.domain.vocabulary import load_au_vocabulary

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("reference", nargs="+", type=Path, help="builds of the reference population")
    ap.add_argument("--spec", type=Path, default=data_file("au_head_spec.json"))
    ap.add_argument("--vocabulary", type=Path, default=data_file("au_vocabulary.csv"))
    ap.add_argument("--output", type=Path, default=data_file("au_head_prior.json"))
    args = ap.parse_args(argv)
    codes = [row["code"] for row in load_au_vocabulary(args.vocabulary)]
    head = derive(json.loads(args.spec.read_text()), read_faces(args.reference), codes)
    print(f"{head.tag}: {len(head.features)} features, reference {head.meta['reference']}; "
          f"written to {head.write(args.output)}")


if __name__ == "__main__":
    main()
