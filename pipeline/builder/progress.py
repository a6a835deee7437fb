"""Progress of a build across Beam worker processes.

Workers write their running count to one small file each in a local folder that the driver names
(`ProgressFile`); the driver polls the folder in a thread and draws a bar. Files work for every
direct-runner mode (threads or processes) without a side channel. On a cluster, whose workers do not
share the driver's disk, the bar does not move; the runner's own monitoring shows the progress.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import uuid
from pathlib import Path


class ProgressFile:
    """This worker's running count of inputs done, in a file of its own under `folder`."""

    def __init__(self, folder: str, every_s: float = 0.5) -> None:
        Path(folder).mkdir(parents=True, exist_ok=True)
        self.path = Path(folder) / f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.every_s = every_s
        self.count = 0
        self.last = 0.0

    def add(self, n: int) -> None:
        self.count += n
        if time.monotonic() - self.last > self.every_s:
            self.flush()

    def flush(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(str(self.count))
        os.replace(tmp, self.path)
        self.last = time.monotonic()


def read_progress(folder: Path) -> int:
    total = 0
    for path in Path(folder).glob("*"):
        if path.suffix == ".tmp":
            continue
        try:
            total += int(path.read_text() or 0)
        except (OSError, ValueError):
            continue
    return total


class ProgressDisplay:
    """Context manager: a tqdm bar on stderr fed by `read_progress` until the block ends."""

    def __init__(self, folder: Path, total: int, label: str = "items", enabled: bool = True) -> None:
        self.folder = folder
        self.total = total
        self.label = label
        self.enabled = enabled
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> ProgressDisplay:
        if self.enabled:
            self._thread = threading.Thread(target=self._loop, daemon=True)
            self._thread.start()
        return self

    def _loop(self) -> None:
        if sys.stderr.isatty():
            self._bar()
        else:
            self._log_lines()

    def _bar(self) -> None:
        from tqdm import tqdm

        with tqdm(total=self.total, unit=self.label, file=sys.stderr, desc="build", dynamic_ncols=True) as bar:
            while not self._stop.wait(0.5):
                bar.update(min(self.total, read_progress(self.folder)) - bar.n)
            bar.update(min(self.total, read_progress(self.folder)) - bar.n)

    def _log_lines(self, every_s: float = 10.0) -> None:
        """Without a terminal (CI, nohup): one line every `every_s` seconds, readable in a log."""
        start = time.monotonic()
        while not self._stop.wait(every_s):
            done = read_progress(self.folder)
            rate = done / max(time.monotonic() - start, 1e-9)
            print(f"build: {done}/{self.total} {self.label} ({rate:.1f}/s)", file=sys.stderr, flush=True)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)
