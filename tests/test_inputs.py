"""Inputs handed to the workers as shard files with completion markers, and corpus paths resolved once per folder."""

from __future__ import annotations

import os
from pathlib import Path

from pipeline.domain.record import Reject, SourceItem
from pipeline.io.shards import ShardStore, plan_shards
from pipeline.sources.base import Source, resolved


def test_shards_are_deterministic_and_carry_their_inputs(tmp_path: Path) -> None:
    items = [SourceItem("s", f"{i}.jpg", f"/x/{i}.jpg", emotion="anger" if i % 2 else None,
                        meta={"i": i}, au_labels={"AU4": 2.0} if i == 3 else None) for i in range(5)]
    shards = plan_shards(items, 2, "key")
    assert [(s.index, s.size) for s, _ in shards] == [(0, 2), (1, 2), (2, 1)]
    assert [s for s, _ in plan_shards(items, 2, "key")] == [s for s, _ in shards]  # same inputs, same shards
    assert plan_shards(items, 2, "other key")[0][0].fingerprint != shards[0][0].fingerprint
    changed = [*items[:3], SourceItem("s", "3.jpg", "/x/3.jpg", emotion="fear"), items[4]]
    assert [s.fingerprint for s, _ in plan_shards(changed, 2, "key")][1] != shards[1][0].fingerprint
    store = ShardStore(str(tmp_path))
    for shard, part in shards:
        store.write_inputs(shard, part)
    assert [item for shard, _ in shards for item in store.read_inputs(shard)] == items
    assert plan_shards([], 2, "key") == []


def test_a_shard_is_finished_once_its_marker_is_written(tmp_path: Path) -> None:
    items = [SourceItem("s", f"{i}.jpg", f"/x/{i}.jpg") for i in range(4)]
    (first, _), (second, _) = plan_shards(items, 2, "key")
    store = ShardStore(str(tmp_path))
    assert store.finished([first, second]) == []
    reject = Reject("s", "1.jpg", "detect", "no_face")
    store.write_outcome(first, [], [reject])
    assert store.finished([first, second]) == [first]
    assert store.read_outcome(first) == ([], [reject])
    # A marker left by another build (other params or inputs) is not this shard's.
    (stale, _), _ = plan_shards(items, 2, "another key")
    assert store.finished([stale]) == []


def test_resolved_follows_links_and_dotdot(tmp_path: Path) -> None:
    root = tmp_path / "corpus"
    (root / "images").mkdir(parents=True)
    (root / "images" / "a.jpg").write_bytes(b"x")
    outside = tmp_path / "secret.jpg"
    outside.write_bytes(b"y")
    os.symlink(outside, root / "images" / "link.jpg")
    os.symlink(tmp_path, root / "up")  # a folder link that leaves the corpus
    source = Source("t", root, {})
    assert resolved(root / "images" / "a.jpg") == (root / "images" / "a.jpg").resolve()
    assert source.inside_root(root, root / "images" / "a.jpg")
    assert not source.inside_root(root, root / "images" / "link.jpg")
    assert not source.inside_root(root, root / "images" / ".." / ".." / "secret.jpg")
    assert not source.inside_root(root, root / "up" / "secret.jpg")
    assert resolved(root / "up" / "secret.jpg") == outside.resolve()
