"""The rule for tests that need ../shared (the shared test corpora): skipped where it is missing, except
under CI, where a missing ../shared fails the run instead of passing it with tests left out."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import WILD_SAMPLE, require_shared, shared_available


@pytest.mark.parametrize("ci", ["true", "1", "yes"])
def test_under_ci_missing_shared_data_fails(ci, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("CI", ci)
    with pytest.raises(pytest.fail.Exception, match="CI is set"):
        require_shared(tmp_path / "missing")
    with pytest.raises(pytest.fail.Exception, match="CI is set"):
        shared_available(tmp_path / "missing")


@pytest.mark.parametrize("ci", [None, "", "false", "0"])
def test_elsewhere_missing_shared_data_skips(ci, tmp_path: Path, monkeypatch) -> None:
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    assert shared_available(tmp_path / "missing") is False
    with pytest.raises(pytest.skip.Exception):
        require_shared(tmp_path / "missing")


def test_present_shared_data_is_returned(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("CI", "true")
    assert require_shared(tmp_path) == tmp_path


def test_no_test_looks_for_shared_data_on_its_own() -> None:
    """Every test reaches ../shared through conftest (WILD_SAMPLE, require_shared, the wild_dir fixture), so
    the CI rule holds for all of them."""
    here = Path(__file__).parent
    offenders = [p.name for p in here.glob("test_*.py")
                 if p.name != Path(__file__).name and ('"shared"' in p.read_text() or "parents[2]" in p.read_text())]
    assert offenders == []
    assert WILD_SAMPLE.parts[-3:] == ("shared", "corpora", "faces-in-the-wild-sample")
