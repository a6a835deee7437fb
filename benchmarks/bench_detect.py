"""Benchmark: which detection retries find the faces the first try misses, and how well small faces align.

Table 1, detection: for corpora derived from the photos of the sample whose face is found as given (tight
crops, shrunk photos, 48 px grey FER-style crops; see benchmarks/derived.py), the share of images on which
MediaPipe's Face Landmarker finds a face, for each way of changing the image before detection: as given, a
border (mean colour, black, replicated or mirrored edge pixels) of 25% or 50% of the longer side, an
upscale to a 192 or 256 px shorter side (bicubic), an upscale then a border. This is what chose the default
`detect.retries` (docs/detection.md).

Table 2, alignment at low resolution: each photo shrunk to a shorter side of S px, detected with the
build's retries; the five alignment points mapped back to the photo's pixels and compared with those found
on the photo itself: the mean error in units of the inter-ocular distance (NME), and the inter-ocular
distance the shrunk face has. This is what chose `align.min_face_px` and `decode.min_side`.

    python benchmarks/bench_detect.py [--corpus ../shared/corpora/faces-in-the-wild-sample] [--json out.json]
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import derived  # noqa: E402 - the derived-data helpers next to this script

from pipeline.config import load_config  # noqa: E402
from pipeline.models.landmarker import FaceLandmarker  # noqa: E402
from pipeline.stages.align import five_points  # noqa: E402
from pipeline.stages.detect import DetectStage  # noqa: E402

DEFAULT_CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpora" / "faces-in-the-wild-sample"
SIDES = (16, 20, 24, 32, 40, 48, 64, 96)


def pad(rgb: np.ndarray, fraction: float, fill: str) -> np.ndarray:
    p = round(max(rgb.shape[:2]) * fraction)
    if fill == "mean":
        colour = [float(v) for v in rgb.reshape(-1, 3).mean(axis=0)]
        return cv2.copyMakeBorder(rgb, p, p, p, p, cv2.BORDER_CONSTANT, value=colour)
    border = {"black": cv2.BORDER_CONSTANT, "replicate": cv2.BORDER_REPLICATE, "mirror": cv2.BORDER_REFLECT_101}[fill]
    return cv2.copyMakeBorder(rgb, p, p, p, p, border)


def upscale(rgb: np.ndarray, side: int) -> np.ndarray:
    h, w = rgb.shape[:2]
    scale = side / min(h, w)
    return rgb if scale <= 1 else cv2.resize(rgb, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_CUBIC)


CHANGES = {
    "as_given": lambda x: x,
    "pad25_mean": lambda x: pad(x, 0.25, "mean"),
    "pad25_black": lambda x: pad(x, 0.25, "black"),
    "pad25_replicate": lambda x: pad(x, 0.25, "replicate"),
    "pad25_mirror": lambda x: pad(x, 0.25, "mirror"),
    "pad50_mean": lambda x: pad(x, 0.5, "mean"),
    "up192": lambda x: upscale(x, 192),
    "up256": lambda x: upscale(x, 256),
    "up192_pad25_mean": lambda x: pad(upscale(x, 192), 0.25, "mean"),
}
CORPORA = {
    "original": lambda rgb, mesh: rgb,
    "tight": lambda rgb, mesh: derived.tight_crop(rgb, mesh, 1.0),
    "tight90": lambda rgb, mesh: derived.tight_crop(rgb, mesh, 0.9),
    "small40": lambda rgb, mesh: derived.shrink(rgb, 40),
    "small24": lambda rgb, mesh: derived.shrink(rgb, 24),
    "fer48": lambda rgb, mesh: derived.fer_crop(rgb, mesh),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    landmarker = FaceLandmarker(max_faces=4)
    photos = []
    for row in csv.DictReader(open(args.corpus / "labels.csv")):
        rgb = derived.decode((args.corpus / "images" / row["image"]).read_bytes())
        faces = landmarker.detect(rgb)
        photos.append((row["image"], rgb, faces[0].mesh if faces else None))
    found = [(n, rgb, mesh) for n, rgb, mesh in photos if mesh is not None]
    detection = {}
    print(f"{len(photos)} photos, {len(found)} with a face found as given; share of images with a face found:")
    print(f"{'corpus':10s} " + " ".join(f"{c:>16s}" for c in CHANGES) + f" {'any':>6s}")
    for corpus, make in CORPORA.items():
        # The original corpus is every photo (those missed as given too); the derived ones need the face's place.
        images = [rgb for _, rgb, _ in photos] if corpus == "original" else [make(rgb, mesh) for _, rgb, mesh in found]
        hits = {change: [bool(landmarker.detect(np.ascontiguousarray(f(rgb)))) for rgb in images]
                for change, f in CHANGES.items()}
        any_hit = [any(h) for h in zip(*hits.values(), strict=True)]
        detection[corpus] = {"images": len(images), **{c: sum(h) for c, h in hits.items()}, "any": sum(any_hit)}
        print(f"{corpus:10s} " + " ".join(f"{sum(h) / len(images):16.1%}" for h in hits.values())
              + f" {sum(any_hit) / len(images):6.1%}", flush=True)
    landmarker.close()

    config = load_config()
    stage = DetectStage(config.detect)
    stage.setup()
    alignment = {}
    print("\nshorter side S px -> faces found (build's retries), inter-ocular px (median, min), NME (median, p90)")
    for side in SIDES:
        errors, iods, missed = [], [], 0
        for _, rgb, mesh in found:
            small = derived.shrink(rgb, side)
            scale = small.shape[1] / rgb.shape[1]
            faces, _ = stage.find_faces(small)
            if not faces:
                missed += 1
                continue
            reference, points = five_points(mesh), five_points(faces[0].mesh) / scale
            iod = float(np.linalg.norm(reference[0] - reference[1]))
            errors.append(float(np.linalg.norm(points - reference, axis=1).mean() / iod))
            iods.append(iod * scale)
        alignment[side] = {"faces": len(errors), "missed": missed, "iod_median": round(float(np.median(iods)), 1),
                           "iod_min": round(float(np.min(iods)), 1), "nme_median": round(float(np.median(errors)), 3),
                           "nme_p90": round(float(np.percentile(errors, 90)), 3)}
        a = alignment[side]
        print(f"S={side:3d}: {a['faces']}/{len(found)} found, inter-ocular {a['iod_median']} ({a['iod_min']}) px, "
              f"NME {a['nme_median']} (p90 {a['nme_p90']})", flush=True)
    stage.teardown()
    if args.json:
        args.json.write_text(json.dumps({"detection": detection, "alignment": alignment}, indent=2) + "\n")


if __name__ == "__main__":
    main()
