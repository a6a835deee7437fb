"""notebooks/explore_release.ipynb runs top to bottom on a small build (nbclient, the venv's python3 kernel)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.cli import main

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "explore_release.ipynb"

pytestmark = pytest.mark.slow


def test_explore_release_notebook_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")

    build = tmp_path / "build"
    assert main(["build", "--no-progress", "--no-validate", "--limit", "8", "-o", str(build)]) == 0
    monkeypatch.setenv("FEA_BUILD_DIR", str(build))
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code"), "commit it clean"
    nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()

    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert str(build.resolve()) in text and "<image>" in text and "accepted" in text
    figures = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(figures) == 3  # faces, AU frequency, emotion x AU heatmap
