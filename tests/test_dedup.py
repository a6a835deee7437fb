"""Near-duplicate faces across corpora: one copy kept, the others rejected with `duplicate_of`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import WILD_SAMPLE, require_shared
from PIL import Image

from pipeline.cli import main
from pipeline.stages.dedup import crop_hash

SHARED = WILD_SAMPLE


def test_hash_survives_reencoding_and_resizing_but_not_another_face(tmp_path: Path) -> None:
    require_shared(SHARED)
    names = sorted(p.name for p in (SHARED / "images").iterdir())[:2]
    a = Image.open(SHARED / "images" / names[0]).convert("RGB")
    a.save(tmp_path / "a.jpg", quality=60)
    smaller = Image.open(tmp_path / "a.jpg").resize((300, 300))
    h = crop_hash(np.asarray(a))
    assert crop_hash(np.asarray(smaller)) == h
    assert crop_hash(np.asarray(Image.open(SHARED / "images" / names[1]).convert("RGB"))) != h


@pytest.mark.slow
def test_the_same_corpus_twice_keeps_one_copy(tmp_path: Path) -> None:
    require_shared(SHARED)
    sources = [{"name": name, "kind": "csv", "path": str(SHARED), "options": {"image_dir": "images"}, "limit": 8}
               for name in ("first", "second")]
    out = tmp_path / "out"
    assert main(["build", "--no-progress", "--no-validate", "--running-mode", "in_memory",
                 "--set", "sources=" + json.dumps(sources), "-o", str(out)]) == 0
    counts = json.loads((out / "manifest.json").read_text())["counts"]
    assert counts["inputs"] == 16 and counts["inputs"] == counts["accepted_inputs"] + counts["rejected_inputs"]
    rows = pa.concat_tables(pq.read_table(f, columns=["source", "face_id"])
                            for f in (out / "data").glob("*.parquet")).to_pylist()
    assert {r["source"] for r in rows} == {"first"}
    kept = {r["face_id"] for r in rows}
    rejects = pa.concat_tables(pq.read_table(f) for f in (out / "rejects").glob("*.parquet")).to_pylist()
    dups = [r for r in rejects if r["reason"] == "near_duplicate"]
    assert len(dups) == len(kept) and all(r["source"] == "second" and r["duplicate_of"] in kept for r in dups)
