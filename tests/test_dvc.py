"""DVC: `dvc repro` in a fresh repository, push to a local remote, pull in a fresh clone, load with datasets."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import changed_in_package, package_snapshot

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def run(cmd: list[str], cwd: Path) -> str:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"  # the venv's fea and dvc
    env.update(GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@example.org", GIT_COMMITTER_NAME="t",
               GIT_COMMITTER_EMAIL="t@example.org", DVC_NO_ANALYTICS="1")
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A fresh git + DVC repository holding the project's pipeline definition (like a new clone)."""
    repo = tmp_path_factory.mktemp("project")
    for name in ("dvc.yaml", ".dvcignore", ".gitignore"):
        shutil.copy(ROOT / name, repo / name)
    for name in ("schemas", "templates", "pipeline", ".dvc"):
        shutil.copytree(ROOT / name, repo / name, ignore=shutil.ignore_patterns("__pycache__", "tmp", "cache"))
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["sources"][0]["limit"] = 10  # keep the test quick; the stage graph is what is tested
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["git", "init", "-q", "-b", "main"], repo)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "project"], repo)
    return repo


def test_repro_push_clone_pull_load(project: Path, tmp_path: Path) -> None:
    import datasets

    before = package_snapshot()
    run(["dvc", "repro"], project)
    # The stages write into this copy of the project, never into the installed package's checkout (where
    # `make demo` has a build/demo of its own).
    assert changed_in_package(before) == []
    assert (project / "build/demo/manifest.json").is_file()
    assert (project / "reports/validation/result.json").is_file()
    assert (project / "reports/demo/report.html").is_file()
    assert (project / "runs/demo/train_log.jsonl").is_file()  # build -> validate -> report -> train
    assert "up to date" in run(["dvc", "status"], project).lower()

    remote = tmp_path / "remote"
    run(["dvc", "remote", "add", "-d", "store", str(remote)], project)
    run(["git", "add", "-A"], project)
    run(["git", "commit", "-qm", "release v0.1"], project)
    run(["git", "tag", "v0.1"], project)
    run(["dvc", "push"], project)
    assert any(remote.rglob("*")), "nothing was pushed to the remote"

    clone = tmp_path / "clone"
    run(["git", "clone", "-q", "--branch", "v0.1", str(project), str(clone)], tmp_path)
    assert not (clone / "build/demo").exists()
    run(["dvc", "pull"], clone)
    pulled = datasets.load_dataset("parquet", data_dir=str(clone / "build/demo/data"))
    original = datasets.load_dataset("parquet", data_dir=str(project / "build/demo/data"))
    for split in original:
        assert sorted(pulled[split]["sample_id"]) == sorted(original[split]["sample_id"])
    assert pulled["train"][0]["image"].size == (336, 336)

    # A trainer that only wants the data: `dvc get` from the tagged version.
    run(["dvc", "get", str(project), "build/demo", "--rev", "v0.1", "-o", str(tmp_path / "got")], tmp_path)
    assert (tmp_path / "got/manifest.json").read_bytes() == (project / "build/demo/manifest.json").read_bytes()
