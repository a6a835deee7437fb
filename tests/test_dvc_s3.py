"""DVC with an S3 remote, against the local S3 API: a build pushed with `dvc push` and pulled in a fresh clone.
The remote's endpoint and credentials come from the environment (AWS_ENDPOINT_URL, AWS_*), never from the
repository's DVC config."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from s3_server import S3Server

pytestmark = pytest.mark.slow


def run(cmd: list[str], cwd: Path, env: dict[str, str]) -> str:
    full = {**os.environ, **env, "DVC_NO_ANALYTICS": "1", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org",
            "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.org"}
    full["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{full['PATH']}"  # the venv's dvc
    proc = subprocess.run(cmd, cwd=cwd, env=full, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
    return proc.stdout + proc.stderr


def test_push_to_and_pull_from_an_s3_remote(s3: S3Server, tmp_path: Path) -> None:
    bucket = s3.bucket("dvc")
    repo = tmp_path / "repo"
    build = repo / "build" / "demo"
    (build / "data").mkdir(parents=True)
    (build / "data" / "train-00000-of-00001.parquet").write_bytes(os.urandom(4096))
    (build / "manifest.json").write_text('{"counts": {"rows": 1}}\n')
    run(["git", "init", "-q", "-b", "main"], repo, s3.env)
    run(["dvc", "init", "-q"], repo, s3.env)
    run(["dvc", "add", "-q", "build/demo"], repo, s3.env)
    run(["dvc", "remote", "add", "-d", "store", f"s3://{bucket}/store"], repo, s3.env)
    run(["git", "add", "-A"], repo, s3.env)
    run(["git", "commit", "-qm", "build"], repo, s3.env)
    run(["dvc", "push"], repo, s3.env)
    assert s3.keys(bucket, "store/")  # the objects are in the bucket
    config = (repo / ".dvc" / "config").read_text()
    assert s3.secret not in config and s3.endpoint not in config

    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(repo), str(clone)], tmp_path, s3.env)
    run(["dvc", "pull"], clone, s3.env)
    for path in sorted(p for p in build.rglob("*") if p.is_file()):
        assert (clone / path.relative_to(repo)).read_bytes() == path.read_bytes()
