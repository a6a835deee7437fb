"""Do two builds of the same inputs find the same faces? (e.g. `detect.landmarks` mediapipe against torch)

    python benchmarks/face_agreement.py BUILD_A BUILD_B [--json out.json]

Faces are matched by (source, item, frame, face index); `--ignore-source` drops the source name.
Reported, with the tolerances issue 22 set:
accepted inputs of each build (difference <= 1% of inputs), and for faces found by both the mean distance of
the 5 landmarks in inter-ocular distances (<= 0.01), the blendshapes' mean absolute difference (<= 0.02), the
share of faces whose set of AUs present is identical (>= 0.97), and the largest head-pose difference.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

COLUMNS = ["source", "source_item", "frame_index", "face_index", "landmarks_5", "blendshapes", "au_present",
           "au_model_present", "yaw", "pitch", "roll"]


def model_aus(row: dict) -> set[str]:
    """The AUs the model found: au_model_present where the corpus' labels fill au_present, else au_present."""
    return set(row["au_model_present"] if row["au_model_present"] is not None else row["au_present"] or [])


def faces(build: Path, ignore_source: bool = False) -> dict[tuple, dict]:
    """One row per face of a build's data (the task rows of a face share its face columns)."""
    out: dict[tuple, dict] = {}
    for shard in sorted((build / "data").glob("*.parquet")):
        for row in pq.read_table(shard, columns=COLUMNS).to_pylist():
            source = None if ignore_source else row["source"]
            out.setdefault((source, row["source_item"], row["frame_index"], row["face_index"]), row)
    return out


def inputs_and_accepted(build: Path) -> tuple[int, int]:
    counts = json.loads((build / "manifest.json").read_text())["counts"]
    return int(counts["inputs"]), int(counts["accepted_inputs"])


def compare(a: Path, b: Path, ignore_source: bool = False) -> dict:
    faces_a, faces_b = faces(a, ignore_source), faces(b, ignore_source)
    inputs_a, accepted_a = inputs_and_accepted(a)
    inputs_b, accepted_b = inputs_and_accepted(b)
    both = sorted(set(faces_a) & set(faces_b))
    landmarks, blendshapes, same_aus, aus_differing, pose = [], [], [], [], []
    for key in both:
        ra, rb = faces_a[key], faces_b[key]
        pa, pb = np.asarray(ra["landmarks_5"], np.float64), np.asarray(rb["landmarks_5"], np.float64)
        inter_ocular = float(np.linalg.norm(pa[0] - pa[1])) or 1.0
        landmarks.append(float(np.linalg.norm(pa - pb, axis=1).mean()) / inter_ocular)
        blendshapes.append(float(np.abs(np.asarray(ra["blendshapes"]) - np.asarray(rb["blendshapes"])).mean()))
        same_aus.append(model_aus(ra) == model_aus(rb))
        aus_differing.append(len(model_aus(ra) ^ model_aus(rb)))
        pose.append(max(abs(ra[k] - rb[k]) for k in ("yaw", "pitch", "roll")))
    return {
        "inputs": [inputs_a, inputs_b],
        "accepted": [accepted_a, accepted_b],
        "accepted_difference_share": abs(accepted_a - accepted_b) / max(inputs_a, 1),
        "faces": [len(faces_a), len(faces_b)],
        "faces_in_both": len(both),
        "landmarks_5_error_iod_mean": float(np.mean(landmarks)) if both else None,
        "landmarks_5_error_iod_p95": float(np.percentile(landmarks, 95)) if both else None,
        "blendshapes_mae_mean": float(np.mean(blendshapes)) if both else None,
        "blendshapes_mae_max": float(np.max(blendshapes)) if both else None,
        "au_sets_identical_share": float(np.mean(same_aus)) if both else None,
        "aus_differing_per_face": float(np.mean(aus_differing)) if both else None,
        "pose_difference_degrees_max": float(np.max(pose)) if both else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("build_a", type=Path)
    parser.add_argument("build_b", type=Path)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--ignore-source", action="store_true",
                        help="match faces by item path alone (two copies of one corpus under different names)")
    args = parser.parse_args(argv)
    result = compare(args.build_a, args.build_b, args.ignore_source)
    for key, value in result.items():
        print(f"{key:32s} {value:.4f}" if isinstance(value, float) else f"{key:32s} {value}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
