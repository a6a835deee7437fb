"""How much emotion information the released AU vector keeps, against the raw face features it comes from.

Runs the probe of pipeline/au/probe.py (the same cross-validated logistic regression from `au_intensity`,
from the raw `blendshapes`, and from blendshapes + `face_measures`, to the emotion label) over one or more
builds, and prints the FE-AU conflict rate and, per emotion, how often each AU is present.

    python benchmarks/au_probe.py build/fitw [build/other ...] [--folds 5 --repeats 10] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from pipeline.au.probe import emotion_probe, read_faces


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("builds", type=Path, nargs="+")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()
    faces = read_faces(args.builds)
    codes = json.loads((args.builds[0] / "manifest.json").read_text())["au_vocabulary"]
    labelled = [f for f in faces if f["emotion"]]
    figures = {
        "faces": len(faces),
        "probe": emotion_probe(faces, args.folds, args.repeats),
        "fe_au_conflict_rate": round(float(np.mean([bool(f["fe_au_conflict"]) for f in labelled])), 4)
        if labelled else None,
        "mean_fe_au_consistency": round(float(np.mean([f["fe_au_consistency"] or 0.0 for f in labelled])), 4)
        if labelled else None,
        "au_rate_all_faces": {c: round(float(np.mean([c in f["au_present"] for f in faces])), 3) for c in codes},
    }
    print(json.dumps({k: v for k, v in figures.items() if k != "au_rate_all_faces"}, indent=2))
    emotions = sorted({f["emotion"] for f in labelled})
    print("\nAU present, % of labelled faces per emotion:")
    print(f"{'':6}" + "".join(f"{e[:7]:>8}" for e in emotions) + f"{'all':>8}")
    for code in codes:
        rates = [100 * np.mean([code in f["au_present"] for f in labelled if f["emotion"] == e]) for e in emotions]
        print(f"{code:6}" + "".join(f"{r:8.0f}" for r in rates) + f"{100 * figures['au_rate_all_faces'][code]:8.0f}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
