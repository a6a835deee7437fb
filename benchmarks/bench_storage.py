"""What object storage costs a build, and what resuming after a crash saves; ratios against a baseline measured
in the same command (the machine is noisy).

    python benchmarks/bench_storage.py --corpus ../shared/corpora/faces-in-the-wild-sample [--n 600] [--repeat 2]

1. Storage: `fea build` of the corpus, alternating R times (validation included, as a user runs it):
   local folder -> local folder (the baseline) and s3:// -> s3:// on a local S3 server (moto, started here).
   The server is on this machine, so the ratio is the cost of the S3 code path (HTTP requests, listing,
   uploads, the copy that publishes), not of a network: add the network's latency and bandwidth for a real store.
2. Resume: a local build is killed (SIGKILL, driver and workers) once `--kill-at` of its shards have their
   completion marker, then rerun; the rerun's wall time against an uninterrupted build's (the baseline of
   step 1), and the share of shards redone.

Prints JSON: wall times per run, medians and the ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the local S3 server the tests use
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_build import make_corpus  # noqa: E402
from s3_server import start as start_s3  # noqa: E402


def fea_build(source: str, output: str, env: dict[str, str], cwd: Path, extra: list[str]) -> float:
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "pipeline.cli", "build", "--no-progress", "--source",
                    f"csv:{source},image_dir=images", "--output", output, *extra],
                   env=env, cwd=cwd, check=True, capture_output=True, timeout=3600)
    return time.monotonic() - started


def phases(out: Path) -> dict:
    """The build's own phases (manifest timings_s) and its validation's wall time."""
    manifest = json.loads((out / "manifest.json").read_text())
    validation = json.loads((out / "validation" / "result.json").read_text())
    return {**manifest["timings_s"], "validation": validation["seconds"]}


def markers(work: Path) -> int:
    return len(list(work.glob("done-*.json"))) if work.is_dir() else 0


def killed_and_rerun(corpus: Path, out: Path, env: dict[str, str], cwd: Path, kill_at: float,
                     shard_size: int, shards: int) -> dict:
    cmd = [sys.executable, "-m", "pipeline.cli", "build", "--no-progress", "--source",
           f"csv:{corpus},image_dir=images", "--output", str(out), "--set", f"runner.shard_size={shard_size}"]
    started = time.monotonic()
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    work = out.with_name(out.name + ".partial") / "_work"
    while markers(work) < kill_at * shards and proc.poll() is None:
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    until_kill = time.monotonic() - started
    done = markers(work)
    rerun = fea_build(str(corpus), str(out), env, cwd, ["--set", f"runner.shard_size={shard_size}"])
    manifest = json.loads((out / "manifest.json").read_text())
    return {"killed_after_s": round(until_kill, 2), "shards_done_at_kill": done,
            "reused": manifest["resume"]["reused"], "shards": manifest["resume"]["shards"],
            "rerun_s": round(rerun, 2), "rerun_phases_s": phases(out)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", type=Path, required=True, help="folder with labels.csv and images/")
    ap.add_argument("--n", type=int, default=0, help="inputs (default: the corpus; more: copies made distinct, as "
                    "bench_build.py makes them)")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--kill-at", type=float, default=0.6, help="share of shards finished when the build is killed")
    ap.add_argument("--shard-size", type=int, default=19)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-storage-") as tmp:
        corpus = args.corpus.resolve()
        if args.n:
            corpus = make_corpus(corpus, args.n, Path(tmp) / "corpus")
        run(args, corpus, Path(tmp))


def run(args: argparse.Namespace, corpus: Path, tmp: Path) -> None:
    n_inputs = sum(1 for _ in (corpus / "labels.csv").open()) - 1
    shards = -(-n_inputs // args.shard_size)
    same = ["--set", f"runner.shard_size={args.shard_size}"]  # every build cut the same way

    proc, s3 = start_s3()
    try:
        env = {**os.environ, **s3.env}
        bucket = s3.bucket("corpora")
        s3.upload(corpus, bucket, "sample")
        releases = s3.bucket("releases")
        cwd = tmp
        local, remote, local_phases = [], [], []
        for i in range(args.repeat):
            local.append(fea_build(str(corpus), str(cwd / f"local{i}"), env, cwd, same))
            local_phases.append(phases(cwd / f"local{i}"))
            remote.append(fea_build(f"s3://{bucket}/sample", f"s3://{releases}/sample{i}", env, cwd, same))
        resume = [killed_and_rerun(corpus, cwd / f"resumed{i}", env, cwd, args.kill_at, args.shard_size, shards)
                  for i in range(args.repeat)]
    finally:
        proc.terminate()
    base = statistics.median(local)
    report = {
        "inputs": n_inputs,
        "storage": {"local_s": [round(t, 2) for t in local], "local_phases_s": local_phases,
                    "s3_s": [round(t, 2) for t in remote],
                    "s3_over_local": round(statistics.median(remote) / base, 3),
                    "pairs": [round(r / lo, 3) for lo, r in zip(local, remote, strict=True)]},
        "resume": {"runs": resume, "shard_size": args.shard_size,
                   "redone_share": [round(1 - r["reused"] / r["shards"], 3) for r in resume],
                   "rerun_over_uninterrupted": round(statistics.median(r["rerun_s"] for r in resume) / base, 3)},
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
