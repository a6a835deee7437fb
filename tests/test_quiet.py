"""Third-party start-up noise: known lines dropped from native output and from log records, everything
else let through, and all of it shown when verbose."""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys

import pytest

from pipeline.process.quiet import QUIET_ENV, VERBOSE_ENV, native_output_filtered, quiet_logs

# What MediaPipe, TFLite and absl print while the Face Landmarker loads (copied from a real build).
NATIVE_NOISE = (
    "WARNING: Logging before InitGoogle() is written to STDERR\n"
    "W0000 00:00:1796134037.938375    5081 face_landmarker_graph.cc:181] Sets FaceBlendshapesGraph acceleration "
    "to xnnpack by default.\n"
    "INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n"
    "W0000 00:00:1796134037.965336    5085 inference_feedback_manager.cc:121] Feedback manager requires a model "
    "with a single signature inference. Disabling support for feedback tensors.\n"
)
REAL_PROBLEM = "E0000 00:00:1796134037.965336    5085 model_loader.cc:12] the model file is truncated\n"


@pytest.fixture
def quiet_env(monkeypatch):
    """Restores the environment variables the quieting sets, after the test."""
    for name in (VERBOSE_ENV, *QUIET_ENV):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_native_noise_is_dropped_and_other_lines_kept(quiet_env, capfd) -> None:
    quiet_env.setenv(VERBOSE_ENV, "0")
    with native_output_filtered():
        os.write(2, (NATIVE_NOISE + REAL_PROBLEM).encode())
    assert capfd.readouterr().err == REAL_PROBLEM


def test_verbose_keeps_native_noise(quiet_env, capfd) -> None:
    quiet_env.setenv(VERBOSE_ENV, "1")
    with native_output_filtered():
        os.write(2, NATIVE_NOISE.encode())
    assert capfd.readouterr().err == NATIVE_NOISE


def test_stderr_is_restored_when_the_block_fails(quiet_env, capfd) -> None:
    quiet_env.setenv(VERBOSE_ENV, "0")
    with pytest.raises(RuntimeError), native_output_filtered():
        os.write(2, REAL_PROBLEM.encode())
        raise RuntimeError("model load failed")
    os.write(2, b"after\n")
    assert capfd.readouterr().err == REAL_PROBLEM + "after\n"


@pytest.mark.parametrize("verbose", [False, True])
def test_log_records_of_known_noise_are_dropped_unless_verbose(verbose, quiet_env) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        quiet_logs(verbose=verbose)
        logging.warning("apitools not found, and bigquery client libraries are not available despite the import "
                        "not raising an ImportError.")
        logging.getLogger("apache_beam.runners.worker.sdk_worker_main").warning("Logging handler created.")
        logging.getLogger("pipeline.builder.run").warning("a warning of ours")
        assert os.environ[VERBOSE_ENV] == ("1" if verbose else "0")  # what worker processes started later read
    finally:
        root.removeHandler(handler)
        quiet_logs(verbose=False)
    lines = stream.getvalue().splitlines()
    assert lines == (["apitools not found, and bigquery client libraries are not available despite the import not "
                      "raising an ImportError.", "Logging handler created.", "a warning of ours"]
                     if verbose else ["a warning of ours"])


@pytest.mark.parametrize("verbose", ["0", "1"])
def test_loading_the_face_landmarker_is_quiet_unless_verbose(verbose) -> None:
    code = "from pipeline.models.landmarker import FaceLandmarker\nFaceLandmarker().close()\n"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, VERBOSE_ENV: verbose})
    assert done.returncode == 0, done.stderr[-2000:]
    if verbose == "1":
        assert "XNNPACK delegate" in done.stderr and "InitGoogle" in done.stderr
    else:
        assert done.stderr == "", done.stderr
