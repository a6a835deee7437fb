"""Source adapters: the CSV-manifest folder (every bad row a named reject, a bad manifest a SourceError),
the embedded demo corpus, the shared wild-faces sample, and the registry behind `kind`."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from conftest import assert_reject
from PIL import Image

from pipeline.config import Config, SourceConfig
from pipeline.domain.record import Reject, SourceItem
from pipeline.knowledge import packaged_emotions
from pipeline.sources import make_source
from pipeline.sources.base import SourceError
from pipeline.sources.demo import DemoSource
from pipeline.sources.folder_csv import CsvSource

WILD_COUNTS = {"neutral": 30, "happiness": 30, "surprise": 25, "sadness": 25, "anger": 25, "disgust": 25,
               "fear": 16, "contempt": 9}


def corpus(root: Path, rows: list[dict[str, str]], files: list[str], manifest: str = "labels.csv",
           header: list[str] | None = None) -> Path:
    """A corpus folder: tiny JPEGs at `files` (relative to root) and a CSV manifest."""
    root.mkdir(parents=True, exist_ok=True)
    for rel in files:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (8, 8), "gray").save(root / rel)
    fields = header or list(dict.fromkeys(k for row in rows for k in row)) or ["image", "emotion"]
    with open(root / manifest, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    return root


def listing(root: Path, **options: Any) -> list[SourceItem | Reject]:
    return list(CsvSource("corpus", root, options).items())


def one(outputs: list[SourceItem | Reject]) -> SourceItem | Reject:
    assert len(outputs) == 1, outputs
    return outputs[0]


# --- CsvSource: manifest-level errors -----------------------------------------------------------------


def test_missing_manifest(tmp_path):
    with pytest.raises(SourceError, match="labels.csv"):
        listing(tmp_path)


def test_custom_manifest_name(tmp_path):
    root = corpus(tmp_path / "c", [{"image": "a.jpg", "emotion": "happy"}], ["a.jpg"], manifest="meta.csv")
    with pytest.raises(SourceError):
        listing(root)
    assert one(listing(root, manifest="meta.csv")).emotion == "happiness"


def test_missing_column_is_named(tmp_path):
    root = corpus(tmp_path, [{"image": "a.jpg", "label": "happy"}], ["a.jpg"])
    with pytest.raises(SourceError, match="emotion") as info:
        listing(root)
    assert "label" in str(info.value), "the message lists the columns the manifest does have"


def test_missing_optional_column_is_named(tmp_path):
    root = corpus(tmp_path, [{"image": "a.jpg", "emotion": "happy"}], ["a.jpg"])
    with pytest.raises(SourceError, match="subject"):
        listing(root, subject_column="subject")


def test_csv_without_path_is_an_error():
    with pytest.raises(SourceError, match="path"):
        list(CsvSource("c", None, {}).items())


# --- CsvSource: rows ---------------------------------------------------------------------------------


def test_labelled_row(tmp_path):
    root = corpus(tmp_path, [{"image": "a.jpg", "emotion": " Happy "}], ["a.jpg"])
    item = one(listing(root))
    assert isinstance(item, SourceItem)
    assert (item.source, item.source_item, item.emotion, item.emotion_raw) == ("corpus", "a.jpg", "happiness",
                                                                             "Happy")
    assert item.uri == str(root / "a.jpg") and Path(item.uri).is_file()
    assert item.subject_id is None and item.split is None and item.frame_index is None
    assert item.key == "corpus:a.jpg"


def test_unknown_label_is_a_reject(tmp_path):
    root = corpus(tmp_path, [{"image": "a.jpg", "emotion": "bored"}], ["a.jpg"])
    reject = assert_reject(one(listing(root)), "read", "unknown_label")
    assert "bored" in reject.detail and reject.source_item == "a.jpg"


def test_empty_emotion_is_unlabelled(tmp_path):
    root = corpus(tmp_path, [{"image": "a.jpg", "emotion": ""}, {"image": "b.jpg", "emotion": "  "}],
                  ["a.jpg", "b.jpg"])
    items = listing(root)
    assert [(i.emotion, i.emotion_raw) for i in items] == [(None, None), (None, None)]


def test_empty_image_cell(tmp_path):
    root = corpus(tmp_path, [{"image": "a.jpg", "emotion": "sad"}, {"image": "", "emotion": "sad"}], ["a.jpg"])
    good, bad = listing(root)
    assert isinstance(good, SourceItem)
    assert assert_reject(bad, "read", "missing_path").source_item == "labels.csv:3"


@pytest.mark.parametrize("rel", ["../outside.jpg", "sub/../../outside.jpg"])
def test_path_escaping_root(tmp_path, rel):
    Image.new("RGB", (8, 8)).save(tmp_path / "outside.jpg")  # exists: must still not be read
    root = corpus(tmp_path / "corpus", [{"image": rel, "emotion": "sad"}], [])
    assert_reject(one(listing(root)), "read", "path_outside_root")


def test_absolute_path_outside_root(tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "elsewhere.jpg")
    root = corpus(tmp_path / "corpus", [{"image": str(tmp_path / "elsewhere.jpg"), "emotion": "sad"}], [])
    assert_reject(one(listing(root)), "read", "path_outside_root")


def test_symlink_pointing_outside_root(tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "secret.jpg")
    root = corpus(tmp_path / "corpus", [{"image": "link.jpg", "emotion": "sad"}], [])
    (root / "link.jpg").symlink_to(tmp_path / "secret.jpg")
    assert_reject(one(listing(root)), "read", "path_outside_root")


def test_missing_file(tmp_path):
    root = corpus(tmp_path, [{"image": "gone.jpg", "emotion": "sad"}], [])
    assert assert_reject(one(listing(root)), "read", "file_not_found").source_item == "gone.jpg"


def test_image_dir_option(tmp_path):
    root = corpus(tmp_path, [{"image": "a.jpg", "emotion": "fear"}], ["images/a.jpg"])
    item = one(listing(root, image_dir="images"))
    assert item.source_item == "images/a.jpg" and item.uri == str(root / "images" / "a.jpg")
    assert_reject(one(listing(root)), "read", "file_not_found")


def test_subject_pattern(tmp_path):
    rows = [{"image": f, "emotion": "neutral"} for f in ("Ann_Lee_0001.jpg", "Ann_Lee_0002.jpg", "odd.jpg")]
    root = corpus(tmp_path, rows, [r["image"] for r in rows])
    items = listing(root, subject_pattern=r"^(.+)_\d+$")
    assert [i.subject_id for i in items] == ["Ann_Lee", "Ann_Lee", None]


def test_subject_column_wins_over_pattern(tmp_path):
    rows = [{"image": "Ann_0001.jpg", "emotion": "sad", "who": "s7"},
            {"image": "Bob_0001.jpg", "emotion": "sad", "who": ""}]
    root = corpus(tmp_path, rows, ["Ann_0001.jpg", "Bob_0001.jpg"])
    items = listing(root, subject_column="who", subject_pattern=r"^(.+)_\d+$")
    assert [i.subject_id for i in items] == ["s7", "Bob"]


def test_split_column(tmp_path):
    rows = [{"image": "a.jpg", "emotion": "sad", "part": "test"}, {"image": "b.jpg", "emotion": "sad", "part": ""}]
    root = corpus(tmp_path, rows, ["a.jpg", "b.jpg"])
    assert [i.split for i in listing(root, split_column="part")] == ["test", None]
    assert [i.split for i in listing(root)] == [None, None]


def test_label_map(tmp_path):
    rows = [{"image": "a.jpg", "emotion": "7"}, {"image": "b.jpg", "emotion": "JOYFUL"},
            {"image": "c.jpg", "emotion": "happy"}, {"image": "d.jpg", "emotion": "x"}]
    root = corpus(tmp_path, rows, ["a.jpg", "b.jpg", "c.jpg", "d.jpg"])
    a, b, c, d = listing(root, label_map={"7": "surprise", "joyful": "happiness", "x": "not-an-emotion"})
    assert (a.emotion, a.emotion_raw) == ("surprise", "7")
    assert b.emotion == "happiness", "label_map keys match case-insensitively"
    assert c.emotion == "happiness", "built-in synonyms still apply"
    assert_reject(d, "read", "unknown_label")  # a map onto a non-canonical emotion is no escape hatch


def test_custom_column_names(tmp_path):
    root = corpus(tmp_path, [{"file": "a.jpg", "expr": "angry"}], ["a.jpg"])
    assert one(listing(root, image_column="file", emotion_column="expr")).emotion == "anger"


def test_unicode_and_spaces_in_file_names(tmp_path):
    names = ["José Ángel_0001.jpg", "Zoë Müller 02.jpg", "日本 語.jpg"]
    root = corpus(tmp_path, [{"image": n, "emotion": "happiness"} for n in names], names)
    items = listing(root, subject_pattern=r"^(.+)_\d+$")
    assert [i.source_item for i in items] == names
    assert all(Path(i.uri).is_file() for i in items)
    assert items[0].subject_id == "José Ángel"


def test_manifest_with_bom(tmp_path):
    (tmp_path / "labels.csv").write_text("\ufeffimage,emotion\na.jpg,sad\n", encoding="utf-8")
    Image.new("RGB", (8, 8)).save(tmp_path / "a.jpg")
    assert one(listing(tmp_path)).emotion == "sadness"


def test_rows_are_accounted_one_for_one(tmp_path):
    rows = [{"image": "a.jpg", "emotion": "sad"}, {"image": "missing.jpg", "emotion": "sad"},
            {"image": "../x.jpg", "emotion": "sad"}, {"image": "b.jpg", "emotion": "??"},
            {"image": "c.jpg", "emotion": ""}]
    root = corpus(tmp_path / "c", rows, ["a.jpg", "b.jpg", "c.jpg"])
    outputs = listing(root)
    assert len(outputs) == len(rows)
    assert [o.reason if isinstance(o, Reject) else "item" for o in outputs] == [
        "item", "file_not_found", "path_outside_root", "unknown_label", "item"]


def test_video_rows_become_frames(tmp_path, demo_dir):
    (tmp_path / "clip.mp4").write_bytes((demo_dir / "single_face.mp4").read_bytes())
    corpus(tmp_path, [{"image": "clip.mp4", "emotion": "neutral", "who": "p1"}], [])
    frames = listing(tmp_path, subject_column="who", max_frames_per_video=3)
    assert len(frames) == 3
    assert all(f.source_item == "clip.mp4" and f.emotion == "neutral" and f.subject_id == "p1" for f in frames)
    indices = [f.frame_index for f in frames]
    assert indices == sorted(set(indices)) and indices[0] == 0


def test_unreadable_video_row(tmp_path):
    (tmp_path / "broken.mp4").write_bytes(b"not a video at all")
    corpus(tmp_path, [{"image": "broken.mp4", "emotion": "neutral"}], [])
    assert_reject(one(listing(tmp_path)), "read", "unreadable_video")


# --- the shared wild-faces sample ---------------------------------------------------------------------


def test_wild_sample_lists_185_labelled_items(wild_dir):
    items = list(CsvSource("wild", wild_dir, {"image_dir": "images", "subject_pattern": r"^(.+)_\d+$"}).items())
    assert len(items) == 185
    assert all(isinstance(i, SourceItem) for i in items), [i for i in items if isinstance(i, Reject)][:3]
    assert set(i.emotion for i in items) <= set(packaged_emotions().canonical)
    assert Counter(i.emotion for i in items) == WILD_COUNTS
    assert all(i.source_item.startswith("images/") and Path(i.uri).is_file() for i in items)
    assert len({i.key for i in items}) == 185
    with_subject = [i for i in items if i.subject_id]
    assert len(with_subject) >= 180 and len({i.subject_id for i in with_subject}) < len(with_subject)


def test_make_source_for_wild_sample(wild_dir):
    source = make_source(SourceConfig(name="wild", kind="csv", path=str(wild_dir), options={"image_dir": "images"}),
                         wild_dir)
    assert isinstance(source, CsvSource) and source.path == wild_dir
    assert sum(1 for _ in source.items()) == 185


# --- demo corpus -------------------------------------------------------------------------------------


def test_demo_source_labels_and_frames(demo_dir):
    items = list(DemoSource("demo", None, {"video_fps": 1.0, "max_frames_per_video": 2}).items())
    assert all(isinstance(i, SourceItem) for i in items)
    labelled = {i.source_item: (i.emotion, i.emotion_raw, i.subject_id) for i in items if i.emotion}
    assert labelled == {
        "0-f1-su-ph.jpg": ("surprise", "su", "f1"),
        "0-f15-hao-ph.jpg": ("happiness", "ha", "f15"),
        "15-f13-anc-ph.jpg": ("anger", "an", "f13"),
        "45-m7-di-ph.jpg": ("disgust", "di", "m7"),
    }
    photos = {i.source_item for i in items if i.frame_index is None}
    assert {"single_face.jpg", "multi_face.jpg", "free-mountain-vector-01.jpg", "Image_with_alpha.png"} <= photos
    assert not any(name.endswith((".csv", ".txt", ".json")) for name in photos)
    frames = [i for i in items if i.frame_index is not None]
    videos = {i.source_item for i in frames}
    assert {"single_face.mp4", "no_face.mp4"} <= videos
    for video in videos:
        indices = [i.frame_index for i in frames if i.source_item == video]
        assert 1 <= len(indices) <= 2 and indices[0] == 0 and indices == sorted(set(indices))
    assert all(i.emotion is None for i in frames)
    assert len({i.key for i in items}) == len(items)


def test_demo_source_from_an_explicit_folder(tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "3-m2-sa-ph.jpg")
    Image.new("RGB", (8, 8)).save(tmp_path / "portrait.png")
    (tmp_path / "notes.txt").write_text("x")
    items = list(DemoSource("d", tmp_path, {}).items())
    assert [(i.source_item, i.emotion, i.subject_id) for i in items] == [
        ("3-m2-sa-ph.jpg", "sadness", "m2"), ("portrait.png", None, None)]


# --- registry ----------------------------------------------------------------------------------------


def test_make_source_unknown_kind():
    with pytest.raises(SourceError, match="nope"):
        make_source(SourceConfig(name="x", kind="nope"), None)


def test_make_source_unimportable_adapter():
    with pytest.raises(SourceError, match="no_such_module_xyz"):
        make_source(SourceConfig(name="x", kind="no_such_module_xyz:Adapter"), None)


def test_make_source_missing_folder(tmp_path):
    with pytest.raises(SourceError, match="not found"):
        make_source(SourceConfig(name="x", kind="csv", path=str(tmp_path / "absent")), tmp_path / "absent")


def test_make_source_resolves_relative_path_against_params_folder(tmp_path):
    corpus(tmp_path / "data", [{"image": "a.jpg", "emotion": "sad"}], ["a.jpg"])
    config = Config(sources=[SourceConfig(name="x", kind="csv", path="data")])
    config.base_dir = tmp_path
    assert config.paths.sources == ((tmp_path / "data").resolve(),)
    source = make_source(config.sources[0], config.paths.sources[0])
    assert source.path == (tmp_path / "data").resolve()
    assert one(list(source.items())).emotion == "sadness"


def test_make_source_demo():
    assert isinstance(make_source(SourceConfig(name="demo", kind="demo"), None), DemoSource)
