"""The torch-blendshapes AU backend gives the same AUs as the MediaPipe reference, through a whole build."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.cli import main

pytestmark = pytest.mark.slow


def au_by_face(out: Path) -> dict[str, np.ndarray]:
    table = pa.concat_tables(pq.read_table(f, columns=["face_id", "au_intensity", "blendshapes", "au_source"])
                             for f in sorted((out / "data").glob("*.parquet")))
    return {r["face_id"]: (np.array(r["au_intensity"]), np.array(r["blendshapes"]), r["au_source"])
            for r in table.to_pylist()}


def test_torch_backend_matches_mediapipe(tmp_path: Path) -> None:
    common = ["build", "--no-progress", "--no-validate", "--running-mode", "in_memory", "--limit", "16"]
    assert main([*common, "-o", str(tmp_path / "mp")]) == 0
    assert main([*common, "--set", "au.backend=torch-blendshapes", "--set", "au.max_batch_size=4",
                 "-o", str(tmp_path / "torch")]) == 0
    mp, th = au_by_face(tmp_path / "mp"), au_by_face(tmp_path / "torch")
    assert mp.keys() == th.keys() and len(mp) >= 8
    # Blendshapes are stored rounded to 4 decimals, AU intensities to 3: compare within that.
    assert max(np.abs(mp[k][1] - th[k][1]).max() for k in mp) <= 2e-4
    assert max(np.abs(mp[k][0] - th[k][0]).max() for k in mp) <= 5e-3
    assert all(v[2].startswith("model:torch-blendshapes@") for v in th.values())
    manifest = json.loads((tmp_path / "torch" / "manifest.json").read_text())
    assert manifest["versions"]["au_model"].startswith("torch-blendshapes@")
