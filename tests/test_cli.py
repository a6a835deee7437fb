"""The `fea` command: help texts, exit codes and one-line reasons."""

from __future__ import annotations

import importlib.util
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


# --- flags: ranges and output locations --------------------------------------------------------------

OUT_OF_RANGE = [
    (["build", "--limit", "-1"], "--limit"),  # once a silent build of zero inputs
    (["build", "--limit", "0"], "--limit"),
    (["build", "--workers", "0"], "--workers"),
    (["build", "--workers", "-2"], "--workers"),
    (["build", "--limit", "two"], "--limit"),
    (["validate", "b", "--min-accept-rate", "1.5"], "--min-accept-rate"),
    (["validate", "b", "--min-accept-rate", "-0.1"], "--min-accept-rate"),
    (["validate", "b", "--reverify-rows", "0"], "--reverify-rows"),
    (["inspect", "b", "--samples", "-1"], "--samples"),
    (["report", "b", "--samples", "-3"], "--samples"),
    (["calibrate", "b", "--min-positives", "0"], "--min-positives"),
    (["calibrate", "b", "--folds", "1"], "--folds"),
    (["export", "b", "-f", "llava", "-o", "e", "--limit", "0"], "--limit"),
    *[(["train", "--model", "tiny", "-o", "r", flag, value], flag) for flag, value in [
        ("--limit", "0"), ("--epochs", "0"), ("--max-steps", "-5"), ("--batch-size", "0"), ("--grad-accum", "0"),
        ("--lr", "0"), ("--lr", "-1e-4"), ("--warmup-steps", "-1"), ("--max-length", "0"), ("--save-steps", "-1"),
        ("--lora-r", "0")]],
    *[(["evaluate", "--model", "m", flag, "0"], flag) for flag in ("--limit", "--batch-size", "--max-new-tokens")],
]


@pytest.mark.parametrize(("argv", "flag"), OUT_OF_RANGE, ids=[" ".join(a) for a, _ in OUT_OF_RANGE])
def test_an_out_of_range_flag_is_a_one_line_usage_error(argv, flag, capsys, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"fea {argv[0]}: argument {flag}") and err.count("\n") == 1, err
    assert list(tmp_path.iterdir()) == []  # nothing ran


@pytest.mark.parametrize("argv", [
    ["export", "b", "-f", "llava", "-o", "{url}"], ["report", "b", "--output", "{url}"],
    ["validate", "b", "--report-dir", "{url}"], ["calibrate", "b", "-o", "{url}"],
    ["train", "--model", "tiny", "-o", "{url}"], ["evaluate", "--model", "m", "--output", "{url}"],
    ["llm", "import-batch", "results.jsonl", "--cache-dir", "{url}"],
])
@pytest.mark.parametrize("url", ["s3://bucket/x", "gs://bucket/x"])
def test_an_output_url_is_refused_not_written_as_a_local_folder(argv, url, capsys, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exc:
        main([a.format(url=url) for a in argv])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert f"cannot write to {url}" in err and err.count("\n") == 1, err
    assert list(tmp_path.iterdir()) == []  # no folder named s3: or gs:


@pytest.mark.skipif(importlib.util.find_spec("gcsfs") is not None, reason="gcsfs is installed here")
def test_a_build_output_url_without_a_filesystem_is_refused(capsys, tmp_path, monkeypatch) -> None:
    """s3:// builds work (tests/test_object_storage.py); a store whose filesystem is not installed is a one-line
    usage error that says what to install, and nothing is written locally."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exc:
        main(["build", "-o", "gs://bucket/x"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "cannot use gs://bucket/x: no filesystem for gs:// is installed" in err and err.count("\n") == 1, err
    assert "pip install 'fea-pipeline[gcs]'" in err
    assert main(["build", "--set", "output.dir=gs://bucket/x"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fea build: invalid params (output.dir): cannot use gs://bucket/x"), err
    assert err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_limit_and_workers_reach_every_source_and_the_runner() -> None:
    from pipeline.cli import parser
    from pipeline.commands.build import config_from

    args = parser().parse_args(["build", "--limit", "2", "--workers", "1", "--source", "demo",
                                "--source", "csv:/data/x,image_dir=images"])
    config = config_from(args)
    assert [s.limit for s in config.sources] == [2, 2] and config.runner.num_workers == 1


@pytest.mark.parametrize("argv", [["-v", "build"], ["build", "-v"], ["build", "--verbose"]])
def test_verbose_is_accepted_before_or_after_the_command(argv) -> None:
    from pipeline.cli import parser

    assert parser().parse_args(argv).verbose is True
    assert parser().parse_args(["build"]).verbose is False
