"""Smoke run of benchmarks/bench_build.py at tiny n: the script runs end to end and its JSON adds up."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.domain.data import PROJECT_ROOT

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


@pytest.mark.slow
def test_bench_gpu_tiny_n_on_cpu(wild_dir: Path, tmp_path: Path) -> None:
    """The GPU benchmark is one command, ready for a machine with a GPU: here it runs on the CPU end to end."""
    out = tmp_path / "gpu.json"
    cmd = [sys.executable, str(PROJECT_ROOT / "benchmarks" / "bench_gpu.py"), "--corpus", str(wild_dir), "--n", "4",
           "--device", "cpu", "--batch-sizes", "1,4", "--build", "--json", str(out)]
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=PROJECT_ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    figures = json.loads(out.read_text())
    assert figures["images"] == 4 and figures["mediapipe_one_core_images_per_s"] > 0
    assert set(figures["torch"]) == {"1", "4"}
    assert all(v["images_per_s"] > 0 for v in figures["torch"].values())
    assert figures["build"]["mediapipe_one_core_s"] > 0 and figures["build"]["torch_s"] > 0


def test_face_agreement_compares_faces_of_two_builds(tmp_path: Path) -> None:
    sys.path.insert(0, str(PROJECT_ROOT / "benchmarks"))
    from face_agreement import compare

    def build(name: str, shift: float, aus: list[list[str]], accepted: int) -> Path:
        root = tmp_path / name
        (root / "data").mkdir(parents=True)
        rows = {"source": ["s"] * 2, "source_item": ["a.jpg", "b.jpg"], "frame_index": [0, 0], "face_index": [0, 0],
                "landmarks_5": [[[x + shift, y] for x, y in ((0, 0), (10, 0), (5, 5), (2, 8), (8, 8))]] * 2,
                "blendshapes": [[0.1] * 52, [0.2 + shift / 100] * 52], "au_present": aus,
                "au_model_present": [None, None], "yaw": [0.0, 1.0], "pitch": [0.0, 0.0], "roll": [0.0, 0.0]}
        pq.write_table(pa.table(rows), root / "data" / "train-00000-of-00001.parquet")
        (root / "manifest.json").write_text(json.dumps({"counts": {"inputs": 100, "accepted_inputs": accepted}}))
        return root

    a = build("a", 0.0, [["AU12"], ["AU4"]], 90)
    b = build("b", 0.1, [["AU12"], ["AU4", "AU7"]], 89)
    figures = compare(a, b)
    assert figures["faces_in_both"] == 2 and figures["accepted_difference_share"] == pytest.approx(0.01)
    assert figures["landmarks_5_error_iod_mean"] == pytest.approx(0.01)  # every point 0.1 px off, eyes 10 px apart
    assert figures["blendshapes_mae_mean"] == pytest.approx(0.0005)
    assert figures["au_sets_identical_share"] == 0.5
