"""Benchmark: end-to-end `fea build` against a plain single-process loop, in the same command.

The baseline (the yardstick of issue 7) only decodes each image and runs MediaPipe's Face
Landmarker on it through MediaPipe's own API, one image after the other, in this process. The
build runs as a subprocess exactly as a user runs it (`fea build`, validation included), `--repeat`
times alternating with the baseline; the median ratio of their throughputs is reported (the
machine may be shared). A build's peak memory is the largest sum of resident memory over its process
tree (driver, Beam workers, the validation process), sampled every 50 ms. Its phases come from the
build itself: `manifest.json["timings_s"]` and `validation/result.json["seconds"]`. Time per stage
comes from running the stages one after the other, in this process, on up to `--profile-images`
images. Ratios, not absolute times, are what to compare across machines.

    python benchmarks/bench_build.py --corpus ../shared/corpora/faces-in-the-wild-sample --n 5000
    python benchmarks/bench_build.py --corpus ... --n 500,5000 --repeat 2 --json bench.json

With several N (comma-separated), each is run in turn and the peak-memory ratio of the largest to
the smallest N is reported. For N larger than the corpus, images are repeated with light
augmentation (mirror, brightness), so every input is a distinct file with distinct bytes.
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


def plain_loop(corpus: Path, pin: bool = False, share: tuple[int, int] = (0, 1)) -> dict:
    """Decode + MediaPipe Face Landmarker (its public API, results as it returns them), one process.
    `pin`: on one core (a reference: a plain loop is not pinned). `share` (k, n): every n-th image from
    the k-th (for the parallel reference)."""
    import mediapipe as mp
    from mediapipe.tasks.python import vision
    from mediapipe.tasks.python.core.base_options import BaseOptions

    from pipeline.models.files import resolve_model

    if pin:
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    options = vision.FaceLandmarkerOptions(
        base_options=BaseOptions(model_asset_buffer=resolve_model("face_landmarker").path.read_bytes()),
        running_mode=vision.RunningMode.IMAGE, num_faces=4,  # the build's detect.max_faces
        output_face_blendshapes=True, output_facial_transformation_matrixes=True,
    )
    landmarker = vision.FaceLandmarker.create_from_options(options)
    try:
        paths = sorted((corpus / "images").iterdir())[share[0]::share[1]]
        landmarker.detect(mp.Image(image_format=mp.ImageFormat.SRGB, data=np.zeros((64, 64, 3), np.uint8)))
        start = time.perf_counter()
        faces = 0
        for path in paths:
            rgb = np.asarray(ImageOps.exif_transpose(Image.open(path)).convert("RGB"))
            result = landmarker.detect(mp.Image(image_format=mp.ImageFormat.SRGB, data=rgb))
            faces += bool(result.face_landmarks)
        seconds = time.perf_counter() - start
    finally:
        landmarker.close()
        if pin:
            os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))
    return {"images": len(paths), "seconds": round(seconds, 3), "images_per_s": round(len(paths) / seconds, 3),
            "with_face": faces, "pinned": pin}


def parallel_loops(corpus: Path, workers: int) -> dict:
    """`workers` plain loops at once, each in its own process on its share of the images: what the
    machine's cores give to MediaPipe alone when they work in parallel (start-up excluded, as for the
    plain loop). Read the build against it as the efficiency of everything around the detector."""
    cmd = [sys.executable, __file__, "--plain-loop-share", str(corpus)]
    procs = [subprocess.Popen([*cmd, f"{k},{workers}"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
             for k in range(workers)]
    runs = [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in procs]
    images, seconds = sum(r["images"] for r in runs), max(r["seconds"] for r in runs)
    return {"workers": workers, "images": images, "seconds": round(seconds, 3),
            "images_per_s": round(images / seconds, 3), "runs": runs}


def stage_profile(corpus: Path, limit: int = 200) -> dict:
    """Milliseconds per input image spent in each stage, the rows and the Parquet write, running the
    stages one after the other in this process (no Beam) on the first `limit` images (fingerprint: the work
    dedup adds per face when enabled; the builds here run without dedup). The Parquet
    write goes through Beam's own row-to-Arrow step and pyarrow's writer, as in a build."""
    import apache_beam as beam
    import pyarrow.parquet as pq
    from apache_beam.io.parquetio import _RowDictionariesToArrowTable

    from pipeline.builder.inputs import enumerate_inputs
    from pipeline.config import load_config
    from pipeline.io.rows import ToRows
    from pipeline.io.schema import arrow_schema
    from pipeline.knowledge import Knowledge
    from pipeline.models.files import resolve_model
    from pipeline.stages.align import AlignStage
    from pipeline.stages.au import AUStage
    from pipeline.stages.decode import DecodeStage
    from pipeline.stages.detect import DetectStage
    from pipeline.stages.fingerprint import FingerprintStage
    from pipeline.stages.measure import MeasureStage
    from pipeline.stages.render import RenderStage
    from pipeline.stages.synergy import SynergyStage
    from pipeline.stages.verify import VerifyStage
    from pipeline.templating import TemplateLibrary

    source = {"name": "bench", "kind": "csv", "path": str(corpus), "options": {"image_dir": "images"}, "limit": limit}
    config = load_config(None, ["dedup.enabled=false", "sources=" + json.dumps([source])])
    items, _ = enumerate_inputs(config)
    model = resolve_model("face_landmarker", config.detect.model_path)
    knowledge = Knowledge.load(config)
    stages = [
        DecodeStage(config.decode), DetectStage(config.detect, str(model.path)), FingerprintStage(config.dedup),
        AlignStage(config.align, knowledge.alignment_template),
        MeasureStage(knowledge.measures),
        AUStage(knowledge.head, "bench"),
        SynergyStage(config.synergy, knowledge.prototypes),
        RenderStage(config.render, TemplateLibrary(config.resolve_input(config.render.templates_dir), knowledge)),
        VerifyStage(knowledge),
    ]
    for stage in stages:
        stage.setup()
    versions = dict.fromkeys(["detector", "au_model", "templates_version", "pipeline_version", "params_hash"], "bench")
    to_rows = ToRows(config.split.ratios, config.split.seed, versions)
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
        rows += [row for inst in elements for row in to_rows.process(inst)]
        seconds["rows"] += time.perf_counter() - start
    schema = arrow_schema("record")
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        to_arrow = _RowDictionariesToArrowTable(schema, row_group_buffer_size=8 * 2**20, record_batch_size=64)
        with pq.ParquetWriter(Path(tmp) / "bench.parquet", schema, compression="zstd") as writer:
            for row in rows:
                for table in to_arrow.process(row, w=None):
                    writer.write_table(table)
            for table in to_arrow.finish_bundle():
                writer.write_table(table.value)
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


def run_build(corpus: Path, out: Path, extra: list[str], validate: bool) -> dict:
    """`fea build` as a subprocess, as a user runs it (with validation unless told otherwise)."""
    # Dedup off: the repeated corpus would lose its copies, and every input should cost the same work.
    cmd = [sys.executable, "-m", "pipeline.cli", "build", "--no-progress",
           "--set", "dedup.enabled=false", "--set", "output.overwrite=true",
           "--source", f"csv:{corpus},image_dir=images", "-o", str(out), *extra]
    if not validate:
        cmd.append("--no-validate")
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
    run = {"seconds": round(seconds, 3), "images_per_s": round(counts["inputs"] / seconds, 3),
           "peak_rss_mb": round(peak / 2**20, 1), "inputs": counts["inputs"], "accepted": counts["accepted_inputs"],
           "rows": counts["rows"], "timings_s": manifest.get("timings_s", {})}
    if validate:
        result = json.loads((out / "validation" / "result.json").read_text())
        run["validation"] = {"seconds": result["seconds"], "success": result["success"],
                             "checks": len(result["checks"])}
    return run


def bench_n(args: argparse.Namespace, n: int, extra: list[str], tmp: Path) -> dict:
    corpus = make_corpus(args.corpus, n, tmp / f"corpus-{n}")
    bases, pinned, parallel, builds = [], [], [], []
    for _ in range(args.repeat):
        bases.append(plain_loop(corpus))
        if args.pinned_baseline:
            pinned.append(plain_loop(corpus, pin=True))
        if args.parallel_baseline:
            parallel.append(parallel_loops(corpus, args.workers))
        builds.append(run_build(corpus, tmp / f"out-{n}", extra, validate=not args.no_validate))
    profile = stage_profile(corpus, min(n, args.profile_images)) if args.profile_images else None
    shutil.rmtree(corpus)
    ratios = [b["images_per_s"] / a["images_per_s"] for a, b in zip(bases, builds, strict=True)]
    figures: dict = {
        "n": n,
        "baseline_plain_loop": {"images_per_s": round(median(b["images_per_s"] for b in bases), 3), "runs": bases},
        "build": {"images_per_s": round(median(b["images_per_s"] for b in builds), 3),
                  "seconds": median(b["seconds"] for b in builds),
                  "peak_rss_mb": median(b["peak_rss_mb"] for b in builds), "runs": builds},
        "ratio_build_over_baseline_throughput": round(median(ratios), 3),
        "ratios": [round(r, 3) for r in ratios],
        "stage_profile": profile,
    }
    if pinned:
        figures["baseline_pinned_loop"] = {"images_per_s": round(median(b["images_per_s"] for b in pinned), 3),
                                           "runs": pinned}
        figures["ratio_build_over_pinned_loop"] = round(median(
            b["images_per_s"] / a["images_per_s"] for a, b in zip(pinned, builds, strict=True)), 3)
    if parallel:
        figures["parallel_plain_loops"] = {"images_per_s": round(median(b["images_per_s"] for b in parallel), 3),
                                           "runs": parallel}
        figures["ratio_build_over_parallel_loops"] = round(median(
            b["images_per_s"] / a["images_per_s"] for a, b in zip(parallel, builds, strict=True)), 3)
    if not args.no_validate and profile:
        # Share of the build's wall time spent writing Parquet and validating. Writing runs inside the
        # workers; its time is the in-process profile's (one core) scaled to n, so the share is an upper
        # bound when several workers write at once.
        shares = []
        for b in builds:
            write_s = profile["ms_per_image"]["parquet_write"] * n / 1000
            shares.append((write_s + b["validation"]["seconds"]) / b["seconds"])
        figures["parquet_and_validation_share"] = round(median(shares), 4)
    return figures


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", type=Path, help="folder with labels.csv and images/")
    ap.add_argument("--n", default=None, help="number of images, or several comma-separated (default: corpus size)")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--running-mode", choices=["multi_threading", "multi_processing", "in_memory"], default=None,
                    help="Beam direct-runner mode (default: runner.direct_running_mode of params.yaml)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="passed on to `fea build`")
    ap.add_argument("--repeat", type=int, default=1, help="baseline/build pairs to run (medians are reported)")
    ap.add_argument("--pinned-baseline", action="store_true",
                    help="also time the plain loop pinned to one core, and report the build against it")
    ap.add_argument("--parallel-baseline", action="store_true",
                    help="also time --workers plain loops at once (separate processes): the machine's parallel "
                         "capacity for MediaPipe alone, and the build against it")
    ap.add_argument("--plain-loop-share", nargs=2, metavar=("CORPUS", "K,N"), help=argparse.SUPPRESS)
    ap.add_argument("--profile-images", type=int, default=200, help="images for the per-stage profile (0: skip)")
    ap.add_argument("--no-validate", action="store_true", help="build with --no-validate")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = ap.parse_args()
    if args.plain_loop_share:  # one process of parallel_loops
        corpus, share = args.plain_loop_share
        k, n = (int(x) for x in share.split(","))
        print(json.dumps(plain_loop(Path(corpus), share=(k, n))))
        return
    if args.corpus is None:
        ap.error("--corpus is required")

    extra = ["--workers", str(args.workers)] + (["--running-mode", args.running_mode] if args.running_mode else [])
    for item in args.set:
        extra += ["--set", item]
    sizes = [int(x) for x in args.n.split(",")] if args.n else [sum(1 for _ in open(args.corpus / "labels.csv")) - 1]
    with tempfile.TemporaryDirectory() as tmp:
        runs = [bench_n(args, n, extra, Path(tmp)) for n in sizes]
    figures: dict = {"cpu_count": os.cpu_count(), "build_args": extra, **runs[-1]}
    if len(runs) > 1:
        figures["by_n"] = runs
        small, large = runs[0]["build"]["peak_rss_mb"], runs[-1]["build"]["peak_rss_mb"]
        figures["peak_rss_ratio_largest_over_smallest_n"] = round(large / small, 3)
    print(json.dumps(figures, indent=2))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
