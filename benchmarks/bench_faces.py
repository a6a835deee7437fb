"""Benchmark: share of real faces a default `fea build` accepts, on corpora derived from real photos, and
the copies it catches across two corpora.

From the corpus (the shared sample by default) it derives, into a temporary folder:
  original   the photos as they are
  tight      each photo cropped to its face box (the face touches the frame); tight90: to 90% of it
  small40    each photo shrunk to a 40 px side (small24: 24 px)
  fer48      48x48 grey FER-style face crops (PNG), through the csv adapter
  two corpora in one build: the first holds all photos but 10; the second holds 50 of the first's photos
             altered (JPEG 70, resized to 90%, brightened by 8%) and the 10 others, new to the build

Faces are located on the photos as given by MediaPipe (the faces the derived images must still show);
photos where no face is found are left out of every derived corpus. Each corpus is then built with
default params (`--no-validate`), the manifest read back. `--project DIR` builds with another checkout of
the project (e.g. a baseline), everything else equal:

    python benchmarks/bench_faces.py [--corpus DIR] [--project DIR] [--only tight,fer48] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
import derived  # noqa: E402 - the derived-data helpers next to this script

PROJECT = Path(__file__).resolve().parents[1]
DEFAULT_CORPUS = PROJECT.parent / "shared" / "corpora" / "faces-in-the-wild-sample"
CORPORA = ("original", "tight", "tight90", "small40", "small24", "fer48", "copies")


def derive(corpus: Path, photos: list, kind: str, root: Path) -> list[Path]:
    """The corpus folder(s) of one kind."""
    dst = root / kind
    if kind == "original":
        return [corpus]
    if kind in ("tight", "tight90"):
        scale = 1.0 if kind == "tight" else 0.9
        return [derived.write_corpus(dst, ((n, derived.tight_crop(rgb, mesh, scale), e) for n, rgb, mesh, e in photos))]
    if kind in ("small40", "small24"):
        side = int(kind[5:])
        return [derived.write_corpus(dst, ((n, derived.shrink(rgb, side), e) for n, rgb, _, e in photos))]
    if kind == "fer48":
        return [derived.write_corpus(dst, ((n.rsplit(".", 1)[0] + ".png", derived.fer_crop(rgb, mesh), e)
                                           for n, rgb, mesh, e in photos))]
    new_names = {name for name, *_ in photos[::len(photos) // 10][:10]}
    new = [p for p in photos if p[0] in new_names]
    kept = [p for p in photos if p[0] not in new_names]
    first = derived.write_corpus(root / "first", ((n, rgb, e) for n, rgb, _, e in kept), quality=95)
    copied = kept[::max(1, len(kept) // 50)][:50]
    second = derived.write_corpus(root / "second", [*((f"copy_{n}", derived.altered_copy(rgb), e)
                                                      for n, rgb, _, e in copied),
                                                    *((f"new_{n}", rgb, e) for n, rgb, _, e in new)], quality=95)
    return [first, second]


def build(sources: list[Path], out: Path, project: Path) -> dict:
    cmd = [sys.executable, "-m", "pipeline.cli", "build", "--no-progress", "--no-validate", "-o", str(out)]
    for source in sources:
        cmd += ["--source", f"csv:{source},image_dir=images"]
    env = {**os.environ, "PYTHONPATH": str(project)}
    started = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=project)
    if done.returncode != 0:
        raise RuntimeError(f"build failed: {done.stderr[-2000:]}")
    manifest = json.loads((out / "manifest.json").read_text())
    counts = manifest["counts"]
    figures = {"inputs": counts["inputs"], "accepted": counts["accepted_inputs"],
               "accept_rate": round(counts["accepted_inputs"] / counts["inputs"], 4),
               "rejected_by_reason": counts["rejected_by_reason"], "seconds": round(time.perf_counter() - started, 1)}
    for key in ("faces_by_detect_attempt", "faces_low_resolution"):
        if key in counts:
            figures[key] = counts[key]
    return figures


def copies_caught(out: Path) -> dict:
    """Of the second corpus: copies rejected as duplicates of a first-corpus face, new photos accepted."""
    rows = pa.concat_tables(pq.read_table(f, columns=["source", "source_item", "face_id"])
                            for f in (out / "data").glob("*.parquet")).to_pylist()
    rejects = pa.concat_tables(pq.read_table(f) for f in (out / "rejects").glob("*.parquet")).to_pylist()
    first_faces = {r["face_id"] for r in rows if r["source"] == "first"}
    second = [{**r, "name": Path(r["source_item"]).name} for r in rejects if r["source"] == "second"]
    caught = [r for r in second if r["name"].startswith("copy_") and r["reason"].endswith("_duplicate")
              and r["duplicate_of"] in first_faces]
    accepted = {Path(r["source_item"]).name for r in rows if r["source"] == "second"}
    return {"copies": 50, "copies_caught": len(caught),
            "copies_let_through": sorted(i for i in accepted if i.startswith("copy_")),
            "new_photos": 10, "new_photos_accepted": sum(i.startswith("new_") for i in accepted),
            "new_photos_rejected": [(r["name"], r["stage"], r["reason"]) for r in second
                                    if r["name"].startswith("new_")]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--project", type=Path, default=PROJECT, help="checkout of the project that builds")
    parser.add_argument("--only", default=",".join(CORPORA), help=f"comma-separated subset of {','.join(CORPORA)}")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    kinds = [k for k in args.only.split(",") if k]
    unknown = set(kinds) - set(CORPORA)
    if unknown:
        parser.error(f"unknown corpora: {sorted(unknown)}")
    photos = derived.located(args.corpus)
    results: dict = {"corpus": str(args.corpus), "project": str(args.project.resolve()),
                     "photos_with_face": len(photos), "corpora": {}}
    with tempfile.TemporaryDirectory(prefix="bench_faces_") as tmp:
        root = Path(tmp)
        for kind in kinds:
            sources = derive(args.corpus, photos, kind, root)
            figures = build(sources, root / f"out_{kind}", args.project)
            if kind == "copies":
                figures.update(copies_caught(root / f"out_{kind}"))
            results["corpora"][kind] = figures
            extra = (f"; copies caught {figures['copies_caught']}/50, new photos accepted "
                     f"{figures['new_photos_accepted']}/10" if kind == "copies" else "")
            print(f"{kind:9s} {figures['accepted']:4d}/{figures['inputs']:<4d} accepted ({figures['accept_rate']:.1%})"
                  f"  rejects {figures['rejected_by_reason']}{extra}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
