"""Pin a worker's face-model threads to a CPU core of its own.

MediaPipe runs its graph on a few threads of its own. Left to the scheduler, they migrate between
cores and wait on one another across cores: on this project's 2-core benchmark machine a single
process was 10-15% slower and used ~15% more CPU than the same process pinned to one core
(docs/cluster.md). A worker that holds a core alone avoids that.

Each worker claims the first core that no other worker on the machine holds, with an exclusive
`flock` on `<tmp>/fea-cpu-locks-<uid>/cpu<N>.lock`: the lock lives as long as the process (or until
`release`), so a crashed worker frees its core. When every allowed core is taken (more workers than
cores), the worker is left unpinned. Linux only; elsewhere pinning is skipped.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from pipeline.config import Config

log = logging.getLogger(__name__)

Scope = Literal["process", "thread"]

_held: dict[int, int] = {}  # cpu -> file descriptor holding its lock, for this process


def lock_dir() -> Path:
    uid = os.getuid() if hasattr(os, "getuid") else 0
    return Path(tempfile.gettempdir()) / f"fea-cpu-locks-{uid}"


def claim_cpu(folder: Path | None = None) -> int | None:
    """Lock the first free core of those this process may run on; None when none is free."""
    import fcntl

    folder = folder or lock_dir()
    folder.mkdir(parents=True, exist_ok=True)
    for cpu in sorted(os.sched_getaffinity(0)):
        if cpu in _held:  # another thread of this process holds it
            continue
        fd = os.open(folder / f"cpu{cpu}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue
        _held[cpu] = fd
        return cpu
    return None


def release(cpu: int) -> None:
    fd = _held.pop(cpu, None)
    if fd is not None:
        os.close(fd)  # closing the descriptor drops the flock


@dataclass
class Pinned:
    cpu: int
    threads: list[int]  # native ids of the threads whose affinity was changed
    previous: set[int]  # their affinity before


def pin(scope: Scope, folder: Path | None = None) -> Pinned | None:
    """Pin to a core of its own: the whole process (every thread now and later) or the calling thread
    (and the threads it starts later, e.g. MediaPipe's, created after this call). `unpin` undoes it."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    try:
        cpu = claim_cpu(folder)
        if cpu is None:
            log.info("every core is held by another worker: not pinning")
            return None
        previous = os.sched_getaffinity(0)
        threads = [threading.get_native_id()] if scope == "thread" else [int(t) for t in os.listdir("/proc/self/task")]
        for tid in threads:
            try:
                os.sched_setaffinity(tid, {cpu})
            except OSError:  # a thread that has exited since the listing
                pass
        return Pinned(cpu, threads, previous)
    except OSError as exc:  # a sandbox that forbids affinity changes: run unpinned
        log.info("cannot pin to a core: %s", exc)
        return None


def unpin(pinned: Pinned) -> None:
    """Give the threads back their former affinity (a caller's thread must not stay on one core after
    an in-process build) and free the core."""
    for tid in pinned.threads:
        try:
            os.sched_setaffinity(tid, pinned.previous)
        except OSError:  # the thread has exited
            pass
    release(pinned.cpu)


def worker_owns_process(config: Config) -> bool:
    """Whether each worker is a process of its own (multi_processing, or any runner but the DirectRunner),
    rather than a thread of a process that others (or the caller) share."""
    runner = config.runner
    return runner.runner != "DirectRunner" or runner.direct_running_mode == "multi_processing"


def pin_scope(config: Config) -> str | None:
    """How the face model is pinned to a core (runner.pin_cpus): the whole worker when each worker is a
    process of its own, else only the thread that runs it (several landmarkers share one process)."""
    if not config.runner.pin_cpus:
        return None
    return "process" if worker_owns_process(config) else "thread"
