"""Benchmark: how often dedup merges distinct faces (false merges) and misses copies, by kind of pair.

Every image of the corpus (the shared sample by default) goes through the build's own decode, detect (with
its retries) and fingerprint code; each pair below is then judged exactly as the dedup stage judges it: a
candidate when the source hashes are within `dedup.max_hash_distance` bits, a copy when the second check
(`same_photo`) says so. Params are the project's defaults unless `--set`.

Copies (should merge; a miss is a copy let through):
  copy          JPEG quality 70, resized to 90%, brightened by 8% (the issue's altered copy)
  copy_add      resized to 90% (bilinear), +20 grey levels (clipped), JPEG 70
  copy_strong   JPEG quality 50, resized to 80%, brightened by 12%
  copy_48px     the same alteration of the photo first shrunk to a 48 px side (copy_32px: 32 px)
  copy_fer48    the same alteration of a 48x48 grey FER-style crop of the face
Distinct faces (should not merge; a merge is a distinct face thrown away):
  smile/jaw/brow@s  the same photo with a local change of expression of s x the inter-ocular distance
                    (same person, background, light and camera: harder than any posed corpus pair)
  48px_<kind>@0.1   the same change, both photos shrunk to a 48 px side
  fer48_smile@0.1   the same change in 48 px FER-style grey crops
  mirror            the photo mirrored
  same_person       two photos of the same person (names that occur more than once in the corpus)
  other_person      every pair of photos of different people
  video<=Xs         two frames of one demo clip X seconds apart or less, judged as if two photos
                    (in a build, frames of one clip are never compared: their sampling rules apply)

    python benchmarks/bench_dedup.py [--corpus ../shared/corpora/faces-in-the-wild-sample] [--json out.json]
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import derived  # noqa: E402 - the derived-data helpers next to this script

from pipeline.config import load_config  # noqa: E402
from pipeline.sources.demo import demo_corpus_dir  # noqa: E402
from pipeline.stages.dedup import bands, same_photo  # noqa: E402
from pipeline.stages.detect import DetectStage  # noqa: E402
from pipeline.stages.fingerprint import fingerprint  # noqa: E402

DEFAULT_CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpora" / "faces-in-the-wild-sample"
STRENGTHS = (0.05, 0.1, 0.15, 0.2)
VIDEO_GAPS_S = (0.25, 0.5, 1.0, 2.0)


class Faces:
    """Detect + fingerprint with the build's code; None when no face is found."""

    def __init__(self, config) -> None:
        self.config = config
        self.detect = DetectStage(config.detect)
        self.detect.setup()

    def __call__(self, rgb: np.ndarray):
        faces, _ = self.detect.find_faces(rgb)
        if not faces:
            return None
        face = max(faces, key=lambda f: np.ptp(f.mesh[:, 0]) * np.ptp(f.mesh[:, 1]))
        return face.mesh, fingerprint(rgb, face.mesh, self.config.dedup)


def judge(a, b, config) -> dict:
    dedup = config.dedup
    distance = (a.phash ^ b.phash).bit_count()
    count = dedup.max_hash_distance + 1
    shares_band = any(x == y for x, y in zip(bands(a.phash, dedup.hash_bits, count),
                                            bands(b.phash, dedup.hash_bits, count), strict=True))
    copy, residual, _ = same_photo(a, b, dedup.check)
    candidate = distance <= dedup.max_hash_distance
    return {"distance": distance, "shares_band": shares_band, "residual": residual,
            "candidate": candidate, "merged": candidate and copy}


def video_frames(step: int = 6) -> list[tuple[str, float, np.ndarray]]:
    out = []
    for name in ("WolfgangLanger_Pexels.mp4", "single_face.mp4"):
        capture = cv2.VideoCapture(str(demo_corpus_dir() / name))
        fps, index = capture.get(cv2.CAP_PROP_FPS) or 25.0, 0
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            if index % step == 0:
                out.append((name, index / fps, cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)))
            index += 1
        capture.release()
    return out


def run(corpus: Path, overrides: list[str], limit: int | None) -> dict:
    config = load_config(overrides=overrides)
    faces = Faces(config)
    rows = list(csv.DictReader(open(corpus / "labels.csv")))[:limit]
    pairs: dict[str, list[dict]] = defaultdict(list)
    originals = {}
    started = time.perf_counter()
    for row in rows:
        rgb = derived.decode((corpus / "images" / row["image"]).read_bytes())
        found = faces(rgb)
        if found is None:
            continue
        mesh, fp = found
        originals[row["image"]] = fp

        def add(kind: str, image: np.ndarray, base=fp, name=row["image"]) -> None:
            other = faces(image)
            if other is not None:
                pairs[kind].append({"item": name, **judge(base, other[1], config)})

        add("copy", derived.decode(derived.altered_copy(rgb)))
        brighter = np.clip(derived.shrink(rgb, round(min(rgb.shape[:2]) * 0.9)).astype(int) + 20, 0, 255)
        add("copy_add", derived.decode(derived.jpeg(brighter.astype(np.uint8), 70)))
        add("copy_strong", derived.decode(derived.altered_copy(rgb, quality=50, size=0.8, brightness=1.12)))
        add("mirror", derived.mirror(rgb))
        for kind, strength in itertools.product(derived.WARP_KINDS, STRENGTHS):
            warped = derived.expression_warp(rgb, mesh, kind, strength)
            add(f"{kind}@{strength}", derived.decode(derived.jpeg(warped, 95)))
        for side in (48, 32):
            small = derived.shrink(rgb, side)
            small_face = faces(small)
            if small_face is None:
                continue
            add(f"copy_{side}px", derived.decode(derived.altered_copy(small)), base=small_face[1])
            for kind in derived.WARP_KINDS if side == 48 else ():
                warped = derived.shrink(derived.expression_warp(rgb, mesh, kind, 0.1), side)
                add(f"48px_{kind}@0.1", warped, base=small_face[1])
        fer = derived.fer_crop(rgb, mesh)
        fer_face = faces(fer)
        if fer_face is not None:
            add("copy_fer48", derived.decode(derived.altered_copy(fer)), base=fer_face[1])
            warped = derived.fer_crop(derived.expression_warp(rgb, mesh, "smile", 0.1), mesh)
            add("fer48_smile@0.1", warped, base=fer_face[1])
    names = sorted(originals)
    person = {n: n.rsplit("_", 1)[0] for n in names}
    for a, b in itertools.combinations(names, 2):
        kind = "same_person" if person[a] == person[b] else "other_person"
        pairs[kind].append({"item": f"{a}|{b}", **judge(originals[a], originals[b], config)})
    clips = [(clip, t, faces(rgb)) for clip, t, rgb in video_frames()]
    clips = [(clip, t, found[1]) for clip, t, found in clips if found is not None]
    for (ca, ta, fa), (cb, tb, fb) in itertools.combinations(clips, 2):
        gap = abs(tb - ta)
        if ca == cb and gap <= VIDEO_GAPS_S[-1]:
            bucket = next(g for g in VIDEO_GAPS_S if gap <= g + 1e-6)
            pairs[f"video<={bucket}s"].append({"item": f"{ca}@{ta:.2f}|{tb:.2f}", **judge(fa, fb, config)})
    return summarise(pairs, config, len(rows), len(originals), time.perf_counter() - started)


def summarise(pairs: dict[str, list[dict]], config, images: int, with_face: int, seconds: float) -> dict:
    kinds = {}
    for kind, judged in sorted(pairs.items()):
        copy = kind.startswith("copy")
        merged = [p for p in judged if p["merged"]]
        residuals = np.array([p["residual"] for p in judged if np.isfinite(p["residual"])] or [np.nan])
        entry = {"pairs": len(judged), "should_merge": copy, "merged": len(merged),
                 "candidates": sum(p["candidate"] for p in judged),
                 "max_hash_distance_seen": max(p["distance"] for p in judged),
                 "residual_min": round(float(np.nanmin(residuals)), 3),
                 "residual_max": round(float(np.nanmax(residuals)), 3)}
        if copy:
            entry["miss_rate"] = round(1 - len(merged) / len(judged), 4)
            entry["missed"] = [p["item"] for p in judged if not p["merged"]][:10]
        else:
            entry["false_merge_rate"] = round(len(merged) / len(judged), 4)
            entry["false_merges"] = [p["item"] for p in merged][:10]
        kinds[kind] = entry
    other = pairs.get("other_person", [])
    return {
        "params": config.dedup.model_dump(),
        "images": images, "images_with_face": with_face, "seconds": round(seconds, 1),
        # Scaling of candidate generation: the share of unrelated pairs that meet in some band group.
        "other_person_band_collision_rate": round(sum(p["shares_band"] for p in other) / max(1, len(other)), 5),
        "kinds": kinds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="params override")
    parser.add_argument("--limit", type=int, default=None, help="use the first N images")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    figures = run(args.corpus, args.set, args.limit)
    print(f"{figures['images']} images ({figures['images_with_face']} with a face), {figures['seconds']} s; "
          f"unrelated pairs meeting in a band group: {figures['other_person_band_collision_rate']:.3%}")
    print(f"{'kind':20s} {'pairs':>6s} {'merged':>7s} {'rate':>7s}  residual min..max  (copies: miss rate; others: "
          "false-merge rate)")
    for kind, k in figures["kinds"].items():
        rate = k.get("miss_rate", k.get("false_merge_rate"))
        print(f"{kind:20s} {k['pairs']:6d} {k['merged']:7d} {rate:7.2%}  {k['residual_min']:.3f}.."
              f"{k['residual_max']:.3f}  max hash distance {k['max_hash_distance_seen']}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
