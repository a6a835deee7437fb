"""Score AU heads against a FACS-coded build: the figures the held-out checks use, for any head, any build.

Reads the faces of one or more builds made with a FACS-coded adapter (e.g. `ckplus` with
`neutral_first_frame=true`: peaks coded, first frames neutral), applies each head to the faces' recorded
features (blendshapes + mesh measures: what the AU stage does in a build), and prints per AU F1, precision,
recall on the coded expressive faces and the share of neutral faces it fires on; then the mean F1 over the
AUs coded at least --min-support times, AUs per neutral face, and the intensity error against every graded
FACS level (A-E), each with its 95% interval over the build's people (subjects resampled). A head scored on
the faces it was learned from is scored in-sample: use `fea calibrate`'s cross-validated figures for those, and
this script for other people's faces.

    python benchmarks/au_facs_eval.py build/ckplus --head schemas/au_head_prior.json --head schemas/au_head.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from pipeline.au.facs_scores import intervals, score_head
from pipeline.au.head import AUHead
from pipeline.au.training_data import read_faces


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("builds", type=Path, nargs="+")
    ap.add_argument("--head", type=Path, action="append", required=True, help="an AU head file (repeatable)")
    ap.add_argument("--min-support", type=int, default=3, help="coded positives for an AU to count in the mean F1")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()
    faces = read_faces(args.builds, neutral_negatives=True, appearance=True)
    results = {}
    for path in args.head:
        head = AUHead.load(path, faces.codes).bind(faces.feature_names)
        inputs = head.inputs(faces.features, descriptors=faces.descriptors)
        intensity = head.intensities(inputs).astype(float)
        figures = score_head(faces, intensity, args.min_support)
        figures["intervals"] = intervals(faces, intensity, args.min_support)
        results[str(path)] = {"head": head.tag, **figures}
        print(f"\n{head.tag} ({path}) on {len(faces.features)} faces of {', '.join(map(str, args.builds))}")
        print(f"{'AU':6}{'coded+':>7}  {'F1':>5} {'prec':>5} {'rec':>5} {'neut':>6}")
        for code, f in figures["aus"].items():
            cells = [f"{f[k]:5.2f}" if f[k] is not None else f"{'':5}" for k in ("f1", "precision", "recall")]
            neutral = f"{f['neutral_rate']:6.1%}" if "neutral_rate" in f else ""
            print(f"{code:6}{f['support']:7d}  {' '.join(cells)} {neutral}")
        print(json.dumps({k: v for k, v in figures.items() if k != "aus"}))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
