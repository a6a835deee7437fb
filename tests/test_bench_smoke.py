"""Smoke run of benchmarks/bench_build.py at tiny n: the script runs end to end and its JSON adds up."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from pipeline.config import PROJECT_ROOT

BENCH = PROJECT_ROOT / "benchmarks" / "bench_build.py"


def test_bench_build_tiny_n(wild_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    # n=4 from a 185-image corpus; one worker thread keeps the run short on a shared CI machine.
    cmd = [sys.executable, str(BENCH), "--corpus", str(wild_dir), "--n", "4", "--workers", "1",
           "--running-mode", "multi_threading", "--profile-images", "2", "--parallel-baseline", "--json", str(out)]
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=PROJECT_ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    figures = json.loads(out.read_text())
    assert figures["n"] == 4
    build, base = figures["build"], figures["baseline_plain_loop"]
    assert build["runs"][0]["inputs"] == 4 and base["runs"][0]["images"] == 4
    assert build["images_per_s"] > 0 and base["images_per_s"] > 0 and build["peak_rss_mb"] > 0
    expected = build["runs"][0]["images_per_s"] / base["runs"][0]["images_per_s"]
    assert abs(figures["ratio_build_over_baseline_throughput"] - expected) < 1e-3
    assert build["runs"][0]["validation"]["success"] is True
    parallel = figures["parallel_plain_loops"]["runs"][0]
    assert parallel["workers"] == 1 and parallel["images"] == 4 and figures["ratio_build_over_parallel_loops"] > 0
    assert build["runs"][0]["timings_s"]["pipeline"] > 0
    stages = figures["stage_profile"]["ms_per_image"]
    assert {"decode", "detect", "align", "render", "parquet_write"} <= set(stages)
    assert stages["detect"] > 0
    assert 0 < figures["parquet_and_validation_share"] < 1
