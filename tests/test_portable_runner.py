"""The protocol Flink and Spark use: Beam's PortableRunner with an embedded job service and an external pool of
SDK workers (`python -m apache_beam.runners.worker.worker_pool_main`), which run the stages in processes of their
own and read the shards' inputs themselves."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.builder.run import build
from pipeline.config import load_config

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.timeout(600)  # a worker that cannot start leaves the job waiting, not failing
def test_a_build_runs_on_the_portable_runner_with_an_external_worker_pool(tmp_path: Path) -> None:
    port = _free_port()
    # The pool starts each SDK worker as `python -m ...sdk_worker_main`: the `python` on PATH must be this one.
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    pool = subprocess.Popen([sys.executable, "-m", "apache_beam.runners.worker.worker_pool_main",
                             f"--service_port={port}"], start_new_session=True, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert pool.poll() is None and time.monotonic() < deadline, "the worker pool did not start"
                time.sleep(0.2)
        config = load_config(None, [
            "sources=[{name: demo, kind: demo, limit: 8}]", f"output.dir={tmp_path / 'out'}", "runner.shard_size=3",
            "runner.runner=PortableRunner",
            f"runner.extra_options=['--job_endpoint=embed', '--environment_type=EXTERNAL', "
            f"'--environment_config=localhost:{port}']",
        ])
        result = build(config, progress=False, validate=False)
    finally:
        os.killpg(pool.pid, signal.SIGTERM)
        pool.wait(timeout=30)
    counts = result.manifest.counts
    assert counts.inputs == 8 == counts.accepted_inputs + counts.rejected_inputs and counts.rows > 0
    assert result.manifest.resume.shards == 3
    assert result.manifest.stage_counters["decode"]["in"] == 8  # the workers ran the stages
