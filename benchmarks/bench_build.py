"""Benchmark: end-to-end `fea build` against a plain single-process loop, in the same command.

The baseline only decodes each image and runs the MediaPipe Face Landmarker on it, one after the
other, in this process. The build runs as a subprocess, `--repeat` times alternating with the
baseline (the median ratio is reported: the machine may be shared); its peak memory is the largest
sum of resident memory over its process tree, sampled every 50 ms. Validation (Great Expectations
and the project checks) is timed on the build's output, in this process. Time per stage comes from
running the stages one after the other, in this process, on up to 200 of the images.
Ratios, not absolute times, are what to compare across machines.

    python benchmarks/bench_build.py --corpus ../shared/corpora/faces-in-the-wild-sample --n 1000
    python benchmarks/bench_build.py --corpus ... --n 1000 --running-mode multi_processing --repeat 3

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
from collections import Counter
from pathlib import Path
from statistics import median

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
                # A distinct brightness for each of the first 61 copies (N up to ~11,000 from 185 images),
                # so no two inputs share their bytes (exact duplicates fail the duplicate_rate check).
                image = ImageEnhance.Brightness(image).enhance(1.0 + 0.004 * ((copy * 7) % 61 - 30))
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


def stage_profile(corpus: Path, limit: int = 200) -> dict:
    """Milliseconds per input image spent in each stage, the rows and the Parquet write, running the
    stages one after the other in this process (no Beam) on the first `limit` images."""
    import apache_beam as beam
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipeline.build import enumerate_inputs
    from pipeline.config import load_config
    from pipeline.io.rows import instruction_row
    from pipeline.io.schema import arrow_schema
    from pipeline.models.files import resolve_model
    from pipeline.splits import assign_split
    from pipeline.stages.align import AlignStage
    from pipeline.stages.au import AUStage, BlendshapeAUMapping
    from pipeline.stages.decode import DecodeStage
    from pipeline.stages.detect import DetectStage
    from pipeline.stages.render import RenderStage
    from pipeline.stages.synergy import Prototypes, SynergyStage
    from pipeline.stages.verify import VerifyStage

    source = {"name": "bench", "kind": "csv", "path": str(corpus), "options": {"image_dir": "images"}, "limit": limit}
    config = load_config(None, ["dedup.enabled=false", "sources=" + json.dumps([source])])
    items, _ = enumerate_inputs(config)
    model = resolve_model("face_landmarker", config.detect.model_path)
    mapping = BlendshapeAUMapping.load(config.resolve(config.au.mapping), config.resolve(config.au.thresholds),
                                       config.resolve(config.au.vocabulary), config.resolve("schemas/blendshapes.json"))
    stages = [
        DecodeStage(config.decode), DetectStage(config.detect, str(model.path)),
        AlignStage(config.align, config.resolve("schemas/alignment_template.json")),
        AUStage(mapping, "bench"),
        SynergyStage(config.synergy, Prototypes.load(config.resolve(config.synergy.prototypes))),
        RenderStage(config.render, config.resolve(config.render.templates_dir), config.resolve(config.au.vocabulary)),
        VerifyStage(),
    ]
    for stage in stages:
        stage.setup()
    versions = dict.fromkeys(["detector", "au_model", "templates_version", "pipeline_version", "params_hash"], "bench")
    seconds: Counter = Counter()
    rows = []
    for item in items:
        elements = [item]
        for stage in stages:
            start = time.perf_counter()
            outputs = [out for element in elements for out in stage.process(element)]
            elements = [out for out in outputs if not isinstance(out, beam.pvalue.TaggedOutput)]
            seconds[stage.name] += time.perf_counter() - start
        start = time.perf_counter()
        rows += [instruction_row(inst, assign_split(inst.sample, config.split), versions) for inst in elements]
        seconds["rows"] += time.perf_counter() - start
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        pq.write_table(pa.Table.from_pylist(rows, schema=arrow_schema("record")), Path(tmp) / "bench.parquet")
        seconds["parquet_write"] += time.perf_counter() - start
    for stage in stages:
        stage.teardown()
    return {"images": len(items), "ms_per_image": {k: round(1000 * v / len(items), 3) for k, v in seconds.items()}}


def tree_rss(proc: psutil.Process) -> int:
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def run_build(corpus: Path, out: Path, extra: list[str]) -> dict:
    """`fea build` as a subprocess, without validation (timed separately)."""
    # Dedup off: the repeated corpus would lose its copies, and every input should cost the same work.
    cmd = [sys.executable, "-m", "pipeline.cli", "build", "--no-progress", "--no-validate",
           "--set", "dedup.enabled=false", "--set", "output.overwrite=true",
           "--source", f"csv:{corpus},image_dir=images", "-o", str(out), *extra]
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
    return {"seconds": round(seconds, 3), "images_per_s": round(counts["inputs"] / seconds, 3),
            "peak_rss_mb": round(peak / 2**20, 1), "inputs": counts["inputs"], "accepted": counts["accepted_inputs"],
            "rows": counts["rows"], "pipeline_seconds": manifest["build_seconds"]}


def time_validation(out: Path) -> dict:
    """Validate the build as `fea build` does after its pipeline, timed in this process."""
    from pipeline.config import load_config
    from pipeline.validate import validate_build

    v = load_config(None, []).validate_
    start = time.perf_counter()
    report = validate_build(out, load_config(None, []).resolve(v.suite), v.min_accept_rate,
                            max_duplicate_rate=v.max_duplicate_rate, min_class_accept_ratio=v.min_class_accept_ratio)
    return {"seconds": round(time.perf_counter() - start, 3), "success": report.success}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", type=Path, required=True, help="folder with labels.csv and images/")
    ap.add_argument("--n", type=int, default=None, help="number of images (default: the corpus size)")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--running-mode", choices=["multi_threading", "multi_processing", "in_memory"], default=None,
                    help="Beam direct-runner mode (default: runner.direct_running_mode of params.yaml)")
    ap.add_argument("--repeat", type=int, default=1, help="baseline/build pairs to run (medians are reported)")
    ap.add_argument("--profile-images", type=int, default=200, help="images for the per-stage profile (0: skip)")
    ap.add_argument("--no-validate", action="store_true", help="do not time validation")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = ap.parse_args()

    extra = ["--workers", str(args.workers)] + (["--running-mode", args.running_mode] if args.running_mode else [])
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        n = args.n or sum(1 for _ in open(args.corpus / "labels.csv")) - 1
        corpus = make_corpus(args.corpus, n, tmp_path / "corpus")
        bases, builds = [], []
        for _ in range(args.repeat):
            bases.append(plain_loop(corpus))
            builds.append(run_build(corpus, tmp_path / "out", extra))
        validation = None if args.no_validate else time_validation(tmp_path / "out")
        profile = stage_profile(corpus, min(n, args.profile_images)) if args.profile_images else None
    ratios = [b["images_per_s"] / a["images_per_s"] for a, b in zip(bases, builds, strict=True)]
    build_s = median(b["seconds"] for b in builds)
    figures: dict = {
        "n": n,
        "cpu_count": os.cpu_count(),
        "build_args": extra,
        "baseline_plain_loop": {"images_per_s": round(median(b["images_per_s"] for b in bases), 3), "runs": bases},
        "build": {"images_per_s": round(median(b["images_per_s"] for b in builds), 3), "seconds": build_s,
                  "peak_rss_mb": median(b["peak_rss_mb"] for b in builds), "runs": builds},
        "ratio_build_over_baseline_throughput": round(median(ratios), 3),
        "ratios": [round(r, 3) for r in ratios],
        "validation": validation,
        "stage_profile": profile,
    }
    if validation and profile:
        # Parquet write time at this n, extrapolated from the profile (it is per row, linear in n).
        write_s = profile["ms_per_image"]["parquet_write"] * n / 1000
        share = (write_s + validation["seconds"]) / (build_s + validation["seconds"])
        figures["parquet_and_validation_share"] = round(share, 4)
    print(json.dumps(figures, indent=2))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
