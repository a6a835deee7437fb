"""The warm helper process: runs functions sent to it, returns results and exceptions, survives
neither a crash nor the end of its block, and never re-runs the caller's main module."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.process.warm_process import WarmProcess


def test_results_exceptions_and_preloaded_modules() -> None:
    with WarmProcess(preload=["json"], env={"FEA_TEST_MARK": "42"}) as helper:
        assert helper.submit(os.getenv, "FEA_TEST_MARK").result(timeout=60) == "42"
        assert helper.submit(pow, 2, 10).result(timeout=60) == 1024
        with pytest.raises(ZeroDivisionError):
            helper.submit(divmod, 1, 0).result(timeout=60)
        # Printing in the helper does not corrupt the replies (its stdout goes to stderr).
        assert helper.submit(print, "noise").result(timeout=60) is None
        assert helper.submit(os.getpid).result(timeout=60) != os.getpid()
        pid = helper._proc.pid
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # the block's end stopped it


def test_a_dead_helper_fails_the_future_not_the_caller() -> None:
    with WarmProcess() as helper:
        helper._proc.kill()
        helper._proc.wait()
        with pytest.raises(RuntimeError, match="helper process failed"):
            helper.submit(pow, 2, 3).result(timeout=60)


def test_a_script_without_main_guard_is_not_run_again(tmp_path: Path) -> None:
    """multiprocessing's spawn would import the caller's script in the child: a second build."""
    marker = tmp_path / "runs"
    script = tmp_path / "script.py"
    script.write_text(
        "from pathlib import Path\n"
        f"p = Path({str(marker)!r}); p.write_text(p.read_text() + 'x' if p.exists() else 'x')\n"
        "from pipeline.process.warm_process import WarmProcess\n"
        "with WarmProcess() as h:\n"
        "    print(h.submit(abs, -3).result(timeout=60))\n"
    )
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.returncode == 0, out.stderr[-1000:]
    assert out.stdout.strip() == "3" and marker.read_text() == "x"


def test_a_cancelled_call_is_not_an_error() -> None:
    with WarmProcess() as helper:
        first = helper.submit(pow, 2, 2)
        first.cancel()  # too late once sent: it runs; either way no exception escapes a thread
        assert helper.submit(pow, 3, 2).result(timeout=60) == 9
        assert first.cancelled() or first.result(timeout=60) == 4


def test_leaving_the_block_does_not_wait_for_imports_in_progress(tmp_path: Path) -> None:
    """A build that fails early (or finishes before GX has loaded) must not wait for the helper."""
    (tmp_path / "slow_import.py").write_text("import time\ntime.sleep(60)\n")
    path = os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])
    start = time.monotonic()
    with WarmProcess(preload=["slow_import"], env={"PYTHONPATH": path}) as helper:
        pid = helper._proc.pid
        time.sleep(0.5)
    assert time.monotonic() - start < 5  # waiting for the import to end would take 60 s
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
