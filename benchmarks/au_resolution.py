"""Do AUs survive a face's reduction? Pair two builds of the same photos (full resolution, and the faces
cropped and reduced, e.g. to 48 px grey as FER-style corpora ship them) and compare, face by face, the
recorded features (blendshapes + mesh measures) and the released AUs.

Prints, over the faces both builds accepted (paired by file name without extension): per feature the
correlation between the two resolutions and the mean shift (reduced - full); the share of faces whose AU set
is identical, the mean Jaccard overlap of the two AU sets, and AUs per face in each build. A head whose AUs
hold across resolution is one that a corpus of small faces can teach without teaching the corpus's look.

    python benchmarks/au_resolution.py build/fitw build/fitw48 [--json out.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from pipeline.au.head import feature_names
from pipeline.io.build_dir import BuildDir

COLUMNS = ["face_id", "source_item", "blendshapes", "face_measures", "au_present"]


def faces_by_file(location: Path) -> dict[str, dict]:
    build = BuildDir(location)
    faces: dict[str, dict] = {}
    for row in build.read_rows(COLUMNS).to_pylist():
        faces.setdefault(Path(row["source_item"]).stem, row)
    return faces


def compare(full: dict[str, dict], reduced: dict[str, dict], names: list[str]) -> dict:
    common = sorted(set(full) & set(reduced))
    a = np.array([full[k]["blendshapes"] + full[k]["face_measures"] for k in common], dtype=np.float64)
    b = np.array([reduced[k]["blendshapes"] + reduced[k]["face_measures"] for k in common], dtype=np.float64)
    features = {}
    for j, name in enumerate(names):
        if a[:, j].std() > 1e-9 and b[:, j].std() > 1e-9:
            features[name] = {"correlation": round(float(np.corrcoef(a[:, j], b[:, j])[0, 1]), 3),
                              "shift": round(float((b[:, j] - a[:, j]).mean()), 4)}
    sets = [(set(full[k]["au_present"]), set(reduced[k]["au_present"])) for k in common]
    jaccard = [len(x & y) / len(x | y) if x | y else 1.0 for x, y in sets]
    return {"faces": len(common), "au_sets_identical": round(float(np.mean([x == y for x, y in sets])), 4),
            "au_jaccard": round(float(np.mean(jaccard)), 4),
            "aus_per_face_full": round(float(np.mean([len(x) for x, _ in sets])), 3),
            "aus_per_face_reduced": round(float(np.mean([len(y) for _, y in sets])), 3),
            "features": features}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("full", type=Path)
    ap.add_argument("reduced", type=Path)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    manifest = BuildDir(args.full).manifest
    names = feature_names(manifest.blendshape_names, manifest.face_measure_names)
    figures = compare(faces_by_file(args.full), faces_by_file(args.reduced), names)
    for name, f in figures["features"].items():
        print(f"{name:32} r={f['correlation']:5.2f}  shift {f['shift']:+.3f}")
    print(json.dumps({k: v for k, v in figures.items() if k != "features"}))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1) + "\n")


if __name__ == "__main__":
    main()
