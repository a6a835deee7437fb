"""A write failure while the shards are written: the build fails with a clear error, publishes
nothing, and leaves the previous release untouched (no half-written shard is ever visible)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipeline.cli import main

pytestmark = pytest.mark.slow


def digest(folder: Path) -> dict[str, str]:
    return {str(f.relative_to(folder)): hashlib.sha256(f.read_bytes()).hexdigest()
            for f in sorted(folder.rglob("*")) if f.is_file()}


def test_disk_full_while_writing_shards_publishes_nothing(tmp_path: Path, monkeypatch, capsys) -> None:
    out = tmp_path / "release"
    # In-process runner, so that the fault injected below reaches the writer.
    args = ["build", "--no-progress", "--limit", "6", "-o", str(out), "--set", "runner.direct_running_mode=in_memory"]
    assert main(args) == 0
    before = digest(out)

    calls = {"n": 0}
    real = pq.ParquetWriter.write_table

    def failing_write(self, table, *a, **k):
        calls["n"] += 1
        if calls["n"] >= 2:
            raise OSError(28, "No space left on device")
        return real(self, table, *a, **k)

    monkeypatch.setattr(pq.ParquetWriter, "write_table", failing_write)
    capsys.readouterr()
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "No space left on device" in err and "nothing was published" in err and "unchanged" in err
    assert calls["n"] >= 2
    assert digest(out) == before  # the previous release, byte for byte
    for shard in out.rglob("*.parquet"):
        pq.read_metadata(shard)  # every visible shard is complete and readable
