"""Third-party start-up noise kept out of `fea`'s output; `-v` lets all of it through.

What Beam, MediaPipe, TFLite and absl print when they load is not ours, and it buries the progress bar
and the summary. It comes these ways, and is stopped where it starts:

- Python log records of other libraries (Beam's "apitools not found" whenever it is imported, a Beam
  worker's "Logging handler created"): a filter on the log handlers (`quiet_logs`), in the `fea` process
  and in each Beam worker process (`pipeline.process.beam_worker` sets it up before Beam loads).
- Native (C++) lines that MediaPipe's absl and TFLite logging write straight to file descriptor 2 while
  the Face Landmarker loads ("Logging before InitGoogle", XNNPACK delegate, inference_feedback_manager).
  No environment variable turns these off in mediapipe >= 0.10.30 (GLOG_minloglevel, TF_CPP_MIN_LOG_LEVEL
  were tried), so `native_output_filtered` points fd 2 at a temporary file while the model loads and
  writes back every line that is not known noise.
- Progress bars of `datasets` and transformers (fea train / evaluate): their own switches, environment
  variables read when they load (`QUIET_ENV`).

Worker processes inherit the verbosity through the environment (`VERBOSE_ENV`), set by `fea` (`-v`).
Only lines matching `NOISE` are dropped: anything else a library prints, errors included, still shows.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import tempfile
import threading
from collections.abc import Iterator

VERBOSE_ENV = "FEA_VERBOSE"  # "1": let third-party output through (set by `fea -v`, read by worker processes)

NOISE = re.compile("|".join([
    r"apitools not found, and bigquery client libraries are not available",  # Beam, at import
    r"Logging handler created\.",                                             # a Beam worker starting
    r"Logging before InitGoogle\(\) is written to STDERR",                    # absl, first native log line
    r"Created TensorFlow Lite XNNPACK delegate for CPU",                      # TFLite
    r"\] Sets \w+ acceleration to xnnpack by default",                        # MediaPipe graph set-up
    r"inference_feedback_manager\.cc:\d+\] Feedback manager requires",        # TFLite, per model
]))

# Beam's local job service relays worker log records at their level: only errors are worth relaying.
QUIET_LOGGERS = {"apache_beam.runners.portability.local_job_service": logging.ERROR}
# Read when the libraries load (so set before, and inherited by worker processes); a user's own setting wins.
QUIET_ENV = {
    "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",  # `datasets` ("Generating train split") in fea train / evaluate
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",       # transformers' "Loading weights", "Writing model shards"
    "GLOG_minloglevel": "2",                   # glog and TensorFlow builds of native libraries (not
    "TF_CPP_MIN_LOG_LEVEL": "2",               # mediapipe >= 0.10.30, which logs through absl)
}


def is_verbose() -> bool:
    return os.environ.get(VERBOSE_ENV) == "1"


def is_noise(line: str) -> bool:
    """Whether a line of output is known third-party start-up noise."""
    return NOISE.search(line) is not None


def _not_noise(record: logging.LogRecord) -> bool:
    return not is_noise(record.getMessage())


def quiet_logs(verbose: bool | None = None) -> None:
    """Drop third-party noise from the Python log handlers of this process (a basic stderr handler is set
    up when there is none) unless `verbose` (default: the environment says so). The choice is recorded in
    the environment, so worker processes started afterwards make the same one."""
    verbose = is_verbose() if verbose is None else verbose
    os.environ[VERBOSE_ENV] = "1" if verbose else "0"
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")
    for handler in root.handlers:
        if verbose:
            handler.removeFilter(_not_noise)
        elif _not_noise not in handler.filters:
            handler.addFilter(_not_noise)
    for name, level in QUIET_LOGGERS.items():
        logging.getLogger(name).setLevel(logging.NOTSET if verbose else level)
    if not verbose:
        for name, value in QUIET_ENV.items():
            os.environ.setdefault(name, value)


_fd2_lock = threading.Lock()  # fd 2 is one per process: threads loading models take turns redirecting it


@contextlib.contextmanager
def native_output_filtered() -> Iterator[None]:
    """Run the block with file descriptor 2 pointed at a temporary file, then write back to stderr every
    line that is not noise (every line when verbose). For native libraries that log straight to fd 2;
    keep the block short (a model load): other threads' stderr output is held back until it ends."""
    if is_verbose():
        yield
        return
    with _fd2_lock, tempfile.TemporaryFile() as captured:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            lines = captured.read().decode(errors="replace").splitlines(keepends=True)
            kept = "".join(line for line in lines if not is_noise(line))
            if kept:
                os.write(2, kept.encode())
