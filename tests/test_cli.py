"""The `fea` command: help texts, exit codes and one-line reasons."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.cli import main


@pytest.mark.parametrize("command", [[], ["build"], ["validate"], ["inspect"], ["report"]])
def test_help_explains_every_option(command, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main([*command, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "usage: fea" in out
    if command == ["build"]:
        for flag in ("--params", "--set", "--source", "--output", "--limit", "--workers", "--no-validate"):
            assert flag in out


def test_unknown_param_is_a_usage_error(capsys, tmp_path) -> None:
    code = main(["build", "--set", "align.crop_sise=448", "-o", str(tmp_path / "x")])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("fea build: invalid params (align.crop_sise)") and "\n" not in err
    assert not (tmp_path / "x").exists()


def test_unknown_source_kind_is_a_usage_error(capsys, tmp_path) -> None:
    assert main(["build", "--source", "nosuch:/tmp", "-o", str(tmp_path / "x")]) == 2
    assert "unknown kind 'nosuch'" in capsys.readouterr().err


def test_missing_model_file_says_how_to_stage_it(capsys, tmp_path) -> None:
    missing = tmp_path / "face_landmarker.task"
    assert main(["build", "--set", f"detect.model_path={missing}", "-o", str(tmp_path / "x")]) == 3
    assert "does not exist" in capsys.readouterr().err


def test_inspect_of_a_non_build_fails_cleanly(capsys, tmp_path) -> None:
    assert main(["inspect", str(tmp_path)]) == 3
    assert "manifest.json" in capsys.readouterr().err


def test_validate_of_a_non_build_exits_non_zero(tmp_path) -> None:
    assert main(["validate", str(tmp_path)]) == 1


def test_entry_point_is_installed(tmp_path) -> None:
    fea = Path(sys.executable).parent / "fea"
    proc = subprocess.run([str(fea), "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "build" in proc.stdout
    # The installed command (cli.run) exits with main()'s code.
    proc = subprocess.run([str(fea), "validate", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr[-500:]


def test_sources_lists_adapters(capsys) -> None:
    assert main(["sources"]) == 0
    out = capsys.readouterr().out
    kinds = {line.split()[0] for line in out.splitlines()[:-1]}
    assert {"csv", "demo", "rafdb", "affectnet", "fer2013"} <= kinds


def test_the_command_reports_params_errors_before_loading_beam_and_without_beams_import_noise(tmp_path) -> None:
    """`fea build` checks params before it imports Beam (seconds sooner), and Beam's import-time warning
    about Google's optional API client does not reach the user."""
    code = ("import sys\nfrom pipeline.cli import main\n"
            f"rc = main(['build', '--set', 'align.crop_sise=448', '-o', {str(tmp_path / 'x')!r}])\n"
            "print(rc, 'apache_beam' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == ["2", "False"], out.stderr[-1000:]
    missing = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "build", "--no-validate", "--no-progress",
         "--source", f"csv:{tmp_path / 'nowhere'},image_dir=images", "-o", str(tmp_path / "y")],
        capture_output=True, text=True, timeout=120)
    assert missing.returncode != 0 and "fea build:" in missing.stderr
    assert "import apache_beam" not in missing.stderr and "apitools" not in missing.stderr, missing.stderr[-1000:]
