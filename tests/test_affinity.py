"""Core pinning: each worker claims a core no other worker holds; pinning covers a whole process or
one thread and the threads it starts; a worker left without a free core runs unpinned."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from pipeline.config import load_config
from pipeline.process import affinity
from pipeline.process.affinity import pin_scope, worker_owns_process

pytestmark = pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="Linux only")

CLAIM = """
import sys, time
from pathlib import Path
from pipeline.process import affinity
print(affinity.claim_cpu(Path(sys.argv[1])), flush=True)
time.sleep(float(sys.argv[2]))
"""


def _claim_in_process(folder: Path, hold_s: float) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", CLAIM, str(folder), str(hold_s)], stdout=subprocess.PIPE, text=True)


def test_processes_claim_distinct_cores_and_a_dead_one_frees_its_core(tmp_path: Path) -> None:
    cores = sorted(os.sched_getaffinity(0))
    holders = [_claim_in_process(tmp_path, 30) for _ in cores]
    try:
        claimed = [int(p.stdout.readline()) for p in holders]
        assert sorted(claimed) == cores  # one core each, none twice
        extra = _claim_in_process(tmp_path, 0)
        assert extra.communicate(timeout=60)[0].strip() == "None"  # every core taken: unpinned
        holders[0].kill()
        holders[0].wait()
        again = _claim_in_process(tmp_path, 0)
        assert again.communicate(timeout=60)[0].strip() == str(claimed[0])  # the lock died with its process
    finally:
        for p in holders:
            p.kill()
            p.wait()


def test_release_frees_the_core_for_the_next_claim(tmp_path: Path) -> None:
    first = affinity.claim_cpu(tmp_path)
    assert first is not None
    try:
        second = affinity.claim_cpu(tmp_path)
        assert second != first  # taken by this process already
        if second is not None:
            affinity.release(second)
    finally:
        affinity.release(first)
    assert affinity.claim_cpu(tmp_path) == first
    affinity.release(first)


def test_thread_pin_covers_the_thread_and_the_threads_it_starts(tmp_path: Path) -> None:
    before = os.sched_getaffinity(0)
    seen: dict[str, set[int]] = {}

    def worker() -> None:
        pinned = affinity.pin("thread", tmp_path)
        seen["cpu"] = {pinned.cpu}
        child = threading.Thread(target=lambda: seen.update(child=os.sched_getaffinity(0)))
        child.start()
        child.join()
        seen["self"] = os.sched_getaffinity(0)
        affinity.unpin(pinned)
        seen["after"] = os.sched_getaffinity(0)

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    assert seen["self"] == seen["child"] == seen["cpu"]
    assert seen["after"] == before  # unpin gives the thread its cores back
    assert os.sched_getaffinity(0) == before  # the test's own thread is untouched


def test_process_pin_covers_every_thread(tmp_path: Path) -> None:
    code = f"""
import os, threading, time
from pathlib import Path
from pipeline.process import affinity
stop = threading.Event()
earlier = threading.Thread(target=stop.wait); earlier.start()
cpu = affinity.pin("process", Path({str(tmp_path)!r})).cpu
masks = {{frozenset(os.sched_getaffinity(int(t))) for t in os.listdir("/proc/self/task")}}
later = {{}}
t = threading.Thread(target=lambda: later.update(m=os.sched_getaffinity(0))); t.start(); t.join()
stop.set()
print(cpu, masks == {{frozenset({{cpu}})}}, later["m"] == {{cpu}})
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    cpu, all_threads, later = out.stdout.split()
    assert cpu != "None" and all_threads == "True" and later == "True", out.stderr[-500:]


def test_pin_scope_follows_the_running_mode() -> None:
    assert pin_scope(load_config(None, ["runner.direct_running_mode=multi_processing"])) == "process"
    assert pin_scope(load_config(None, ["runner.direct_running_mode=multi_threading"])) == "thread"
    assert pin_scope(load_config(None, ["runner.runner=DataflowRunner"])) == "process"
    assert pin_scope(load_config(None, ["runner.pin_cpus=false"])) is None


def test_only_a_worker_with_a_process_of_its_own_changes_process_wide_state() -> None:
    assert worker_owns_process(load_config(None, ["runner.direct_running_mode=multi_processing"]))
    assert worker_owns_process(load_config(None, ["runner.runner=FlinkRunner"]))
    assert not worker_owns_process(load_config(None, ["runner.direct_running_mode=in_memory"]))
    assert not worker_owns_process(load_config(None, ["runner.direct_running_mode=multi_threading"]))
