"""Benchmark: end-to-end `fea build` against a plain single-process loop, in the same command.

The baseline only decodes each image and runs the MediaPipe Face Landmarker on it, one after the
other, in this process. The build runs as a subprocess (Beam spawns its own workers); its peak
memory is the largest sum of resident memory over its process tree, sampled every 50 ms.
Ratios, not absolute times, are what to compare across machines.

    python benchmarks/bench_build.py --corpus ../shared/corpora/faces-in-the-wild-sample --n 185
    python benchmarks/bench_build.py --corpus ../shared/corpora/faces-in-the-wild-sample --n 1000

For n larger than the corpus, images are repeated with light augmentation (mirror, brightness),
so every input is a distinct file with distinct bytes.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil
from PIL import Image, ImageEnhance, ImageOps


def make_corpus(src: Path, n: int, dst: Path) -> Path:
    """A CSV corpus of n images built from `src` (image,emotion columns; images/ folder)."""
    rows = list(csv.DictReader(open(src / "labels.csv")))
    (dst / "images").mkdir(parents=True)
    with open(dst / "labels.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["image", "emotion"])
        for i in range(n):
            row = rows[i % len(rows)]
            copy = i // len(rows)
            name = f"{copy:03d}_{row['image']}"
            if copy == 0:
                shutil.copy(src / "images" / row["image"], dst / "images" / name)
            else:
                image = Image.open(src / "images" / row["image"]).convert("RGB")
                image = ImageOps.mirror(image) if copy % 2 else image
                image = ImageEnhance.Brightness(image).enhance(1.0 + 0.04 * ((copy % 5) - 2))
                image.save(dst / "images" / name, quality=92)
            writer.writerow([name, row["emotion"]])
    return dst


def plain_loop(corpus: Path) -> dict:
    """Decode + Face Landmarker, single process, no pipeline."""
    from pipeline.models.landmarker import FaceLandmarker

    paths = sorted((corpus / "images").iterdir())
    landmarker = FaceLandmarker(max_faces=4)
    landmarker.detect(np.zeros((64, 64, 3), np.uint8))  # warm-up
    start = time.perf_counter()
    faces = 0
    for path in paths:
        rgb = np.asarray(ImageOps.exif_transpose(Image.open(path)).convert("RGB"))
        faces += bool(landmarker.detect(rgb))
    seconds = time.perf_counter() - start
    landmarker.close()
    return {"images": len(paths), "seconds": seconds, "images_per_s": len(paths) / seconds, "with_face": faces}


def tree_rss(proc: psutil.Process) -> int:
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def run_build(corpus: Path, out: Path, extra: list[str]) -> dict:
    # Dedup off: the repeated corpus would lose its copies, and every input should cost the same work.
    cmd = [sys.executable, "-m", "pipeline.cli", "build", "--no-progress", "--no-validate",
           "--set", "dedup.enabled=false", "--source", f"csv:{corpus},image_dir=images", "-o", str(out), *extra]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ps = psutil.Process(proc.pid)
    peak = 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.wait(0.05):
            peak = max(peak, tree_rss(ps))

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    stdout, stderr = proc.communicate()
    stop.set()
    thread.join()
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"build failed ({proc.returncode}):\n{stderr[-3000:]}")
    manifest = json.loads((out / "manifest.json").read_text())
    counts = manifest["counts"]
    return {"seconds": seconds, "images_per_s": counts["inputs"] / seconds, "peak_rss_mb": peak / 2**20,
            "inputs": counts["inputs"], "accepted": counts["accepted_inputs"], "rows": counts["rows"],
            "pipeline_seconds": manifest["build_seconds"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", type=Path, required=True, help="folder with labels.csv and images/")
    ap.add_argument("--n", type=int, default=None, help="number of images (default: the corpus size)")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        n = args.n or sum(1 for _ in open(args.corpus / "labels.csv")) - 1
        corpus = make_corpus(args.corpus, n, tmp_path / "corpus")
        base = plain_loop(corpus)
        build = run_build(corpus, tmp_path / "out", ["--workers", str(args.workers)])
    figures = {
        "n": n,
        "baseline_plain_loop": base,
        "build": build,
        "ratio_build_over_baseline_throughput": build["images_per_s"] / base["images_per_s"],
        "cpu_count": os.cpu_count(),
    }
    print(json.dumps(figures, indent=2))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
