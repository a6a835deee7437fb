"""Benchmark: the LLM stage's concurrency against a local OpenAI-compatible server with fixed latency.

The server (tests/fake_openai.py) adds `--latency` seconds to every request. The stage sends
`--requests` distinct, uncached requests with `--concurrency` in flight; the baseline, in the same
run, is the same stage at concurrency 1 on `--sequential-sample` of them, extrapolated per request
(1,000 sequential requests at 200 ms would take over 3 minutes). Also checks that the server never
saw more than `--concurrency` requests at once and that a second pass is served from the cache.

    python benchmarks/bench_llm.py                               # 1000 requests, 200 ms, concurrency 64

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from fake_openai import FakeOpenAI  # noqa: E402

from pipeline.config import LLMConfig  # noqa: E402
from pipeline.domain.data import PROJECT_ROOT  # noqa: E402
from pipeline.domain.record import Instruction, Sample, SourceItem  # noqa: E402
from pipeline.knowledge import packaged  # noqa: E402
from pipeline.stages.llm import LLMStage  # noqa: E402


def instructions(n: int) -> list[Instruction]:
    """n description instructions whose requests all differ (a distinct reference answer each)."""
    codes = packaged().codes
    out = []
    for i in range(n):
        intensity = np.zeros(len(codes), dtype=np.float32)
        intensity[codes.index("AU12")] = 3.0
        sample = Sample(item=SourceItem("bench", f"{i}.jpg", f"/x/{i}.jpg", emotion="happiness"),
                        image_sha256=str(i), au_intensity=intensity, au_present=["AU12"])
        out.append(Instruction(sample, "description", "bench", [
            {"role": "user", "content": "<image>\nDescribe this face."},
            {"role": "assistant", "content": f"A smiling face (AU12, lip corner puller), photo {i}."}]))
    return out


def stage(server: FakeOpenAI, cache: Path, concurrency: int) -> LLMStage:
    cfg = LLMConfig(enabled=True, base_url=server.base_url, model="bench", api_key_env="FEA_BENCH_KEY",
                    max_retries=0, timeout_s=30, max_concurrency=concurrency)
    s = LLMStage(cfg, packaged(), str(PROJECT_ROOT / cfg.prompts), str(cache), str(cache / "budget.json"),
                 str(cache / "batch"), concurrency=concurrency)
    s.setup()
    return s


def timed(s: LLMStage, insts: list[Instruction]) -> tuple[float, list[Instruction]]:
    started = time.perf_counter()
    out = list(s.process(insts))
    return time.perf_counter() - started, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("--latency", type=float, default=0.2)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--sequential-sample", type=int, default=25)
    args = ap.parse_args()
    os.environ.setdefault("FEA_BENCH_KEY", "bench-key")
    insts = instructions(args.requests + args.sequential_sample)
    with tempfile.TemporaryDirectory() as tmp, FakeOpenAI(latency_s=args.latency) as server:
        seq_seconds, _ = timed(stage(server, Path(tmp) / "seq", 1), insts[args.requests:])
        per_request = seq_seconds / args.sequential_sample
        server.max_in_flight = 0
        before = len(server.requests)
        par = stage(server, Path(tmp) / "par", args.concurrency)
        par_seconds, out = timed(par, insts[: args.requests])
        sent = len(server.requests) - before
        peak = server.max_in_flight
        again_seconds, _ = timed(stage(server, Path(tmp) / "par", args.concurrency), insts[: args.requests])
        resent = len(server.requests) - before - sent
    ok = sum(i.llm_status == "ok" for i in out)
    print(json.dumps({
        "requests": args.requests, "latency_s": args.latency, "concurrency": args.concurrency,
        "sequential_s_per_request": round(per_request, 4),
        "sequential_s_estimated": round(per_request * args.requests, 1),
        "concurrent_s": round(par_seconds, 2),
        "speedup_vs_sequential": round(per_request * args.requests / par_seconds, 1),
        "requests_sent": sent, "responses_ok": ok, "max_in_flight_seen_by_server": peak,
        "cached_rerun_s": round(again_seconds, 2), "cached_rerun_requests": resent,
    }, indent=1))


if __name__ == "__main__":
    main()
