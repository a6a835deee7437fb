"""Benchmark: blendshape scores from the torch port (batched) against MediaPipe's per-image path.

Torch: `TorchBlendshapes.predict` on real Face Landmarker meshes (478 x 3, pixel units, numpy in and
out, as a pipeline stage would call it) at each batch size; faces per second.
MediaPipe: the Face Landmarker has no blendshape-only entry point, so its per-image `detect` is timed
twice over the same images, with output_face_blendshapes on and off; the difference is the cost of
MediaPipe's blendshape step per face, and the "on" figure is what the Detect stage pays today.

    python benchmarks/bench_blendshapes.py                       # CPU, batch sizes 1 32 256
    python benchmarks/bench_blendshapes.py --device cuda --batch-sizes 1 32 256 4096
    python benchmarks/bench_blendshapes.py --skip-mediapipe --meshes meshes.npy   # GPU box without images

Prints one JSON object. Compare ratios across machines, not absolute numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
from PIL import Image

DEFAULT_CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpora" / "faces-in-the-wild-sample"


def load_images(corpus: Path, n: int) -> list[np.ndarray]:
    paths = sorted((corpus / "images").iterdir())[:n]
    return [np.asarray(Image.open(p).convert("RGB")) for p in paths]


def mediapipe_landmarker(blendshapes: bool, model_path: Path):
    """A MediaPipe Tasks FaceLandmarker like pipeline.models.landmarker's, blendshapes switchable."""
    from mediapipe.tasks.python import vision
    from mediapipe.tasks.python.core.base_options import BaseOptions

    options = vision.FaceLandmarkerOptions(
        base_options=BaseOptions(model_asset_buffer=model_path.read_bytes()),
        running_mode=vision.RunningMode.IMAGE,
        num_faces=4,
        output_face_blendshapes=blendshapes,
        output_facial_transformation_matrixes=True,
    )
    return vision.FaceLandmarker.create_from_options(options)


def time_mediapipe(images: list[np.ndarray], model_path: Path, repeats: int) -> dict:
    import mediapipe as mp

    wrapped = [mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(rgb)) for rgb in images]
    landmarkers = {"with_blendshapes": mediapipe_landmarker(True, model_path),
                   "without_blendshapes": mediapipe_landmarker(False, model_path)}
    for landmarker in landmarkers.values():
        for image in wrapped[:5]:  # warm-up
            landmarker.detect(image)
    figures: dict[str, list[float]] = {key: [] for key in landmarkers}
    faces = 0
    for _ in range(repeats):  # interleaved passes, so both see the same load on the machine
        for key, landmarker in landmarkers.items():
            start = time.perf_counter()
            faces = sum(len(landmarker.detect(image).face_landmarks) for image in wrapped)
            figures[key].append(time.perf_counter() - start)
    for landmarker in landmarkers.values():
        landmarker.close()
    on, off = (np.asarray(figures[key]) for key in landmarkers)
    per_image_on = on.min() / len(images) * 1e3
    per_image_off = off.min() / len(images) * 1e3
    blendshape_ms_per_face = float(np.median(on - off)) / max(faces, 1) * 1e3  # paired passes
    blendshape_faces_per_s = round(1e3 / blendshape_ms_per_face, 1) if blendshape_ms_per_face > 0 else None
    return {
        "images": len(images),
        "faces": faces,
        "ms_per_image_with_blendshapes": round(per_image_on, 3),
        "ms_per_image_without_blendshapes": round(per_image_off, 3),
        "blendshape_ms_per_face_estimate": round(blendshape_ms_per_face, 4),
        "blendshape_faces_per_s_estimate": blendshape_faces_per_s,
        "detect_faces_per_s_with_blendshapes": round(faces / on.min(), 1),
        "note": "per-image figures: best pass; blendshape cost: median over paired passes of (on - off) / faces, noisy",
    }


def collect_meshes(images: list[np.ndarray], model_path: Path) -> np.ndarray:
    from pipeline.models.landmarker import FaceLandmarker

    landmarker = FaceLandmarker(str(model_path))
    meshes = [face.mesh for rgb in images for face in landmarker.detect(rgb)]
    landmarker.close()
    return np.stack(meshes).astype(np.float32)


def time_torch(model, meshes: np.ndarray, batch_sizes: list[int], min_seconds: float, rounds: int = 5) -> dict:
    """Faces/s per batch size: `rounds` timing windows of >= min_seconds/rounds each; best and median."""
    results = {}
    for batch in batch_sizes:
        reps = -(-batch // len(meshes))
        data = np.concatenate([meshes] * reps)[:batch]
        for _ in range(3):  # warm-up (and CUDA context / kernel selection)
            model.predict(data)
        rates = []
        for _ in range(rounds):
            calls, start = 0, time.perf_counter()
            while True:
                model.predict(data)  # numpy in and out: includes the device round trip
                calls += 1
                elapsed = time.perf_counter() - start
                if elapsed >= min_seconds / rounds and calls >= 2:
                    break
            rates.append(calls * batch / elapsed)
        results[str(batch)] = {
            "faces_per_s": round(max(rates), 1),
            "faces_per_s_median": round(float(np.median(rates)), 1),
            "ms_per_batch": round(batch / max(rates) * 1e3, 4),
        }
    return results


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS, help="folder with images/")
    parser.add_argument("--n", type=int, default=60, help="images to run the landmarker on")
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 32, 256])
    parser.add_argument("--seconds", type=float, default=2.0, help="minimum timed seconds per batch size")
    parser.add_argument("--repeats", type=int, default=5, help="passes over the images for MediaPipe (best kept)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--meshes", type=Path, default=None, help=".npy of (B, 478, 3) meshes instead of detecting")
    parser.add_argument("--save-meshes", type=Path, default=None, help="write the detected meshes to this .npy")
    parser.add_argument("--skip-mediapipe", action="store_true", help="torch figures only")
    args = parser.parse_args(argv)

    import torch

    from pipeline.models.blendshapes_torch import TorchBlendshapes
    from pipeline.models.files import resolve_model

    if args.threads:
        torch.set_num_threads(args.threads)
    model_file = resolve_model("face_landmarker")
    images = [] if args.meshes and args.skip_mediapipe else load_images(args.corpus, args.n)
    meshes = np.load(args.meshes) if args.meshes else collect_meshes(images, model_file.path)
    if args.save_meshes:
        np.save(args.save_meshes, meshes)

    start = time.perf_counter()
    model = TorchBlendshapes(device=args.device)
    load_s = time.perf_counter() - start
    report: dict = {
        "machine": {
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "device": str(model.device),
            "gpu": torch.cuda.get_device_name(model.device) if model.device.type == "cuda" else None,
        },
        "meshes": len(meshes),
        "torch_load_s": round(load_s, 3),
        "torch_blendshapes": time_torch(model, meshes, args.batch_sizes, args.seconds),
    }
    if not args.skip_mediapipe:
        mediapipe = time_mediapipe(images, model_file.path, args.repeats)
        report["mediapipe_per_image"] = mediapipe
        # What re-deriving blendshapes costs today (a full per-image detect) vs from stored meshes.
        report["torch_speedup_vs_mediapipe_detect"] = {
            batch: round(fig["faces_per_s"] / mediapipe["detect_faces_per_s_with_blendshapes"], 2)
            for batch, fig in report["torch_blendshapes"].items()
        }
        if mediapipe["blendshape_faces_per_s_estimate"]:
            report["torch_speedup_vs_mediapipe_blendshape_step"] = {
                batch: round(fig["faces_per_s"] / mediapipe["blendshape_faces_per_s_estimate"], 2)
                for batch, fig in report["torch_blendshapes"].items()
            }
    print(json.dumps(report, indent=1))
    return report


if __name__ == "__main__":
    main()
