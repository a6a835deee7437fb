"""A build that stopped reruns only its unfinished shards of image work and ends with the rows of an
uninterrupted build (pipeline/io/shards.py). Here the stop is a worker failure injected in-process; a build
killed from outside, on object storage, is in tests/test_object_storage.py."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from pipeline.builder.run import build
from pipeline.builder.shard_steps import SaveShard
from pipeline.config import load_config
from pipeline.errors import PipelineFailed
from pipeline.io.build_dir import BuildDir

pytestmark = pytest.mark.slow

BASE = ["sources=[{name: demo, kind: demo, limit: 12}]", "runner.direct_running_mode=in_memory",
        "runner.num_workers=1", "runner.shard_size=3"]


def rows(out: Path) -> pa.Table:
    folder = BuildDir(out)
    return folder.read_rows(folder.parquet(folder.shards()[0]).schema_arrow.names).sort_by("sample_id")


def test_a_failed_build_reruns_only_its_unfinished_shards(tmp_path: Path, monkeypatch) -> None:
    reference = build(load_config(None, [*BASE, f"output.dir={tmp_path / 'reference'}"]), progress=False,
                      validate=False)
    assert reference.manifest.resume.model_dump() == {"shards": 4, "shard_size": 3, "reused": 0}

    config = load_config(None, [*BASE, f"output.dir={tmp_path / 'out'}"])
    saved: list[int] = []
    original = SaveShard.process

    def lost_on_the_third_shard(self, work):
        if len(saved) == 2:
            raise RuntimeError("worker lost")
        saved.append(work.shard.index)
        yield from original(self, work)

    monkeypatch.setattr(SaveShard, "process", lost_on_the_third_shard)
    with pytest.raises(PipelineFailed, match="a rerun reuses its finished shards"):
        build(config, progress=False, validate=False)
    assert not (tmp_path / "out").exists()
    markers = sorted(p.name for p in (tmp_path / "out.partial" / "_work").glob("done-*.json"))
    assert markers == [f"done-{i:05d}.json" for i in sorted(saved)]
    monkeypatch.undo()

    resumed = build(config, progress=False, validate=False)
    assert resumed.manifest.resume.reused == 2
    assert resumed.manifest.stage_counters["decode"]["in"] == 12 - sum(  # only the unfinished shards decoded
        len([s for s in range(i * 3, i * 3 + 3) if s < 12]) for i in saved)
    assert resumed.manifest.counts == reference.manifest.counts
    assert rows(tmp_path / "out").equals(rows(tmp_path / "reference"))
    assert not (tmp_path / "out.partial").exists() and not (tmp_path / "out" / "_work").exists()

    # Other params: the markers are not this build's, every shard runs again.
    again = build(load_config(None, [*BASE, f"output.dir={tmp_path / 'out'}", "align.crop_size=224"]),
                  progress=False, validate=False)
    assert again.manifest.resume.reused == 0
