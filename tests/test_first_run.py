"""The installed `fea build` as a newcomer runs it, from a folder of their own: the build is written there
(or beside their params file), nothing appears in the package's checkout, and the output holds only our
own lines; `-v` lets the third-party start-up output through."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import changed_in_package, package_snapshot

from pipeline.config import DEFAULT_PARAMS

pytestmark = pytest.mark.slow
FEA = Path(sys.executable).parent / "fea"
# What Beam, MediaPipe, TFLite and absl printed on every build before they were quieted.
NOISE = ("apitools not found", "Logging handler created", "Logging before InitGoogle", "XNNPACK delegate",
         "inference_feedback_manager", "face_landmarker_graph")
PROGRESS_LINE = re.compile(r"build: \d+/\d+ items \([\d.]+/s\)")


def fea(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "FEA_VERBOSE"}
    done = subprocess.run([str(FEA), *args], cwd=cwd, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_a_build_from_elsewhere_writes_only_there_and_prints_only_our_lines(tmp_path: Path) -> None:
    before = package_snapshot()
    work = tmp_path / "work"
    work.mkdir()
    # The package's own params (none in the working directory): output.dir build/demo is under the cwd.
    done = fea(["build", "--limit", "3", "--no-validate"], cwd=work)
    assert (work / "build" / "demo" / "manifest.json").is_file()
    # Without a terminal the progress bar is a line every 10 s; nothing else may reach stderr.
    assert all(PROGRESS_LINE.fullmatch(line) for line in done.stderr.splitlines()), done.stderr
    assert done.stdout.startswith(f"built {work / 'build' / 'demo'}: 3 inputs") and len(done.stdout.splitlines()) == 1
    # A params file kept elsewhere: its relative output.dir and llm.cache_dir are anchored beside it.
    conf = tmp_path / "conf"
    conf.mkdir()
    params = yaml.safe_load(DEFAULT_PARAMS.read_text())
    params["sources"][0]["limit"] = 3
    params["output"]["dir"] = "out/fea"
    (conf / "params.yaml").write_text(yaml.safe_dump(params))
    done = fea(["build", "--params", str(conf / "params.yaml"), "--no-validate", "--no-progress"], cwd=work)
    assert (conf / "out" / "fea" / "manifest.json").is_file()
    assert not any(line in done.stdout + done.stderr for line in NOISE), done.stderr
    assert changed_in_package(before) == []


def test_verbose_lets_third_party_start_up_output_through(tmp_path: Path) -> None:
    done = fea(["build", "-v", "--limit", "2", "--no-validate", "--no-progress", "-o", str(tmp_path / "b")],
               cwd=tmp_path)
    for line in ("apitools not found", "Logging handler created", "XNNPACK delegate", "Logging before InitGoogle"):
        assert line in done.stderr, line
