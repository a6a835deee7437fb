"""Inputs handed to the workers as files, and corpus paths resolved once per folder."""

from __future__ import annotations

import os
from pathlib import Path

from pipeline.io.inputs import read_input_file, write_input_files
from pipeline.record import SourceItem
from pipeline.sources.base import Source, resolved


def test_input_files_round_trip_in_order(tmp_path: Path) -> None:
    items = [SourceItem("s", f"{i}.jpg", f"/x/{i}.jpg", emotion="anger" if i % 2 else None,
                        meta={"i": i}, au_labels={"AU4": 2.0} if i == 3 else None) for i in range(5)]
    paths = write_input_files(items, tmp_path / "_inputs", per_file=2)
    assert [Path(p).name for p in paths] == ["inputs-00000.pickle", "inputs-00001.pickle", "inputs-00002.pickle"]
    assert [item for p in paths for item in read_input_file(p)] == items
    assert write_input_files([], tmp_path / "none") == []


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
