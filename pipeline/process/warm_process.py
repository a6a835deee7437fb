"""A helper Python process, started early, that imports slow modules while the caller works and
then runs functions sent to it: a one-worker executor (`submit(fn, *args) -> Future`).

A build starts one for validation (`suite_process`): Great Expectations takes ~4.5 s of CPU to
import, which the helper spends on the core the driver's own start-up leaves idle (`fea build` starts
it before importing Beam); after the pipeline, the suite runs there in parallel with the project
checks. Leaving the block kills the helper. It is a plain `python -m pipeline.process.warm_process`
subprocess, not multiprocessing: a spawned multiprocessing child re-runs the caller's main module,
which would start a second build from a user's script that lacks a `__main__` guard.

Protocol: pickled `(function, args)` on the child's stdin, pickled `(ok, result or exception)` back
on a copy of its stdout (its own stdout then goes to stderr, so a library's prints cannot corrupt it).
"""

from __future__ import annotations

import importlib
import os
import pickle
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from typing import Any


class WarmProcess:
    """Context manager: the helper process runs while the block runs; `submit` sends it work."""

    def __init__(self, preload: Iterable[str] = (), env: dict[str, str] | None = None) -> None:
        self.preload = list(preload)
        self.env = env or {}
        self._proc: subprocess.Popen | None = None
        self._lock = threading.Lock()  # one request on the pipe at a time

    def __enter__(self) -> WarmProcess:
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "pipeline.process.warm_process", *self.preload],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env={**os.environ, **self.env},
        )
        return self

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future:
        future: Future = Future()

        def call() -> None:
            if not future.set_running_or_notify_cancel():  # cancelled before it was sent
                return
            try:
                with self._lock:
                    assert self._proc is not None and self._proc.stdin and self._proc.stdout, "not started"
                    self._proc.stdin.write(pickle.dumps((fn, args)))
                    self._proc.stdin.flush()
                    ok, value = pickle.load(self._proc.stdout)
            except Exception as exc:  # noqa: BLE001 - a dead or broken helper fails the future, not the caller
                future.set_exception(RuntimeError(f"helper process failed: {type(exc).__name__}: {exc}"))
                return
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)

        threading.Thread(target=call, name="warm-process-call", daemon=True).start()
        return future

    def __exit__(self, *exc: object) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        # Stopped, not asked to exit: between requests the helper holds nothing worth keeping, and a clean
        # exit would first finish any import in progress, then tear down its modules (~0.5 s for GX).
        proc.kill()
        proc.wait()
        for pipe in (proc.stdin, proc.stdout):
            if pipe:
                try:
                    pipe.close()
                except OSError:  # a request was cut off mid-write; nothing is waiting for it
                    pass


def suite_process() -> WarmProcess:
    """The helper that validation uses: it imports Great Expectations (about 4 s of CPU) and then runs the
    suite (`pipeline.validate.suite_checks`) in parallel with the project checks. `fea build` starts it
    before its own imports, so both run at once on a two-core machine and GX is loaded by the time the
    Beam workers start: `with suite_process() as p: build(..., suite_executor=p)`."""
    return WarmProcess(preload=["great_expectations", "pipeline.validate"], env={"GX_ANALYTICS_ENABLED": "false"})


def _serve(preload: list[str]) -> None:
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    for name in preload:
        importlib.import_module(name)
    requests = sys.stdin.buffer
    while True:
        try:
            fn, args = pickle.load(requests)
        except EOFError:
            return
        try:
            reply = (True, fn(*args))
        except Exception as exc:  # noqa: BLE001 - sent back to the caller
            reply = (False, exc)
        try:
            data = pickle.dumps(reply)  # whole, before writing: a failure must not leave half a reply
        except Exception as exc:  # noqa: BLE001 - an unpicklable result or exception
            data = pickle.dumps((False, RuntimeError(f"unpicklable reply: {type(exc).__name__}: {exc}")))
        replies.write(data)
        replies.flush()


if __name__ == "__main__":
    _serve(sys.argv[1:])
