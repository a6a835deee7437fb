"""Benchmark: the face stage in torch (batched, GPU when present) against MediaPipe on one CPU core, same command.

    python benchmarks/bench_gpu.py --corpus ../shared/corpora/faces-in-the-wild-sample --n 2000
    python benchmarks/bench_gpu.py --corpus ... --device cuda --batch-sizes 1,32,128,512 --build --json gpu.json

Images are decoded once into memory (repeated to `--n` if the corpus is smaller). The baseline is MediaPipe's
Face Landmarker through its own API, one image after the other, pinned to one CPU core (its threads too). The
torch Face Landmarker (`detect.landmarks: torch`) then runs the same images at each batch size on `--device`:
detector, mesh, blendshapes and pose, images sent from host memory each call as a build does. Reported: images/s
of each and the ratio to the baseline (issue 22's target on a GPU: >= 50x). With `--build`, the whole `fea build`
(dedup off) runs twice as subprocesses on the same images: `detect.landmarks=torch` on `--device` against
`mediapipe` with one worker pinned to one core, and the ratio of their wall times is reported.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def load_images(corpus: Path, n: int) -> list[np.ndarray]:
    paths = sorted(p for p in (corpus / "images").rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if not paths:
        raise SystemExit(f"no images under {corpus / 'images'}")
    decoded = [np.asarray(Image.open(p).convert("RGB")) for p in paths[:n]]
    return [decoded[i % len(decoded)] for i in range(n)]


def mediapipe_one_core(images: list[np.ndarray]) -> float:
    """Images/s of MediaPipe's Face Landmarker on one core (the process and the threads it starts)."""
    from pipeline.models.landmarker import FaceLandmarker

    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(before)})
    try:
        landmarker = FaceLandmarker()  # its graph threads inherit the one-core affinity
        for rgb in images[:5]:
            landmarker.detect(rgb)
        start = time.perf_counter()
        for rgb in images:
            landmarker.detect(rgb)
        seconds = time.perf_counter() - start
        landmarker.close()
    finally:
        os.sched_setaffinity(0, before)
    return len(images) / seconds


def torch_batched(images: list[np.ndarray], device: str, batch_size: int) -> float:
    import torch

    from pipeline.models.face_landmarker_torch import TorchFaceLandmarker

    landmarker = TorchFaceLandmarker(device=device, batch_size=batch_size)
    landmarker.detect_batch(images[:batch_size])  # warm-up: kernels, allocator
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    for first in range(0, len(images), batch_size):
        landmarker.detect_batch(images[first:first + batch_size])
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return len(images) / (time.perf_counter() - start)


def build_seconds(corpus: Path, n: int, overrides: list[str], prefix: list[str], workers: int) -> float:
    out = Path(tempfile.mkdtemp(prefix="bench-gpu-"))
    try:
        command = [*prefix, sys.executable, "-m", "pipeline.cli", "build", "--no-progress", "--no-validate",
                   "--source", f"csv:{corpus},image_dir=images", "--limit", str(n), "--workers", str(workers),
                   "--set", "dedup.enabled=false", *[a for o in overrides for a in ("--set", o)], "-o", str(out)]
        start = time.perf_counter()
        subprocess.run(command, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
        return time.perf_counter() - start
    finally:
        shutil.rmtree(out, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=ROOT.parent / "shared/corpora/faces-in-the-wild-sample")
    parser.add_argument("--n", type=int, default=1000, help="images per measurement")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-sizes", default="1,8,32,128,512")
    parser.add_argument("--build", action="store_true", help="also time whole builds (torch vs one-core mediapipe)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if args.device == "cpu":
        torch.set_num_threads(1)  # one core, as the baseline
    images = load_images(args.corpus, args.n)
    result: dict = {"device": args.device, "gpu": torch.cuda.get_device_name(0) if args.device.startswith("cuda")
                    else None, "images": len(images)}
    baseline = mediapipe_one_core(images)
    result["mediapipe_one_core_images_per_s"] = round(baseline, 1)
    print(f"mediapipe, one CPU core: {baseline:8.1f} images/s")
    result["torch"] = {}
    for size in (int(s) for s in args.batch_sizes.split(",")):
        rate = torch_batched(images, args.device, size)
        result["torch"][size] = {"images_per_s": round(rate, 1),
                                 "ratio_to_mediapipe_one_core": round(rate / baseline, 2)}
        print(f"torch on {args.device}, batch {size:4d}: {rate:8.1f} images/s = {rate / baseline:6.2f}x mediapipe")
    if args.build:
        one_core = ["taskset", "-c", str(min(os.sched_getaffinity(0)))] if shutil.which("taskset") else []
        cpu = build_seconds(args.corpus, args.n, ["detect.landmarks=mediapipe"], one_core, workers=1)
        gpu = build_seconds(args.corpus, args.n, ["detect.landmarks=torch", f"detect.torch_device={args.device}",
                                                  "au.max_batch_size=512"], [], workers=1)
        result["build"] = {"mediapipe_one_core_s": round(cpu, 1), "torch_s": round(gpu, 1),
                           "speedup": round(cpu / gpu, 2)}
        print(f"whole build of {args.n} images: mediapipe on one core {cpu:.1f} s, torch on {args.device} {gpu:.1f} s "
              f"({cpu / gpu:.2f}x)")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
