"""resolve_model: explicit path > $FEA_FACE_LANDMARKER > packaged copy, always checked against the sha256
in schemas/models.json; every way of failing is a ModelFileError that says what to do."""

from __future__ import annotations

import json
import shutil

import pytest

from pipeline.models import files
from pipeline.models.files import ModelFileError, resolve_model, sha256_file

ENTRY = json.loads(files.REGISTRY.read_text())["face_landmarker"]
ENV = ENTRY["env"]


@pytest.fixture(autouse=True)
def no_env_override(monkeypatch):
    monkeypatch.delenv(ENV, raising=False)


@pytest.fixture(scope="module")
def packaged():
    return resolve_model("face_landmarker")


@pytest.fixture
def good_copy(packaged, tmp_path):
    path = tmp_path / "copy" / "face_landmarker.task"
    path.parent.mkdir()
    shutil.copyfile(packaged.path, path)
    return path


@pytest.fixture
def wrong_file(tmp_path):
    path = tmp_path / "wrong.task"
    path.write_bytes(b"definitely not the landmarker bundle")
    return path


def test_registry_names_env_and_package():
    assert ENV == "FEA_FACE_LANDMARKER"
    assert len(ENTRY["sha256"]) == 64 and ":" in ENTRY["packaged_in"]


def test_packaged_model_is_found_and_checked(packaged):
    assert packaged.name == "face_landmarker"
    assert packaged.path.is_file() and packaged.path.name == ENTRY["file"]
    assert packaged.sha256 == ENTRY["sha256"] == sha256_file(packaged.path)
    assert packaged.version == f"face_landmarker@{ENTRY['sha256'][:12]}"


def test_explicit_path_to_a_good_copy(good_copy):
    assert resolve_model("face_landmarker", good_copy).path == good_copy
    assert resolve_model("face_landmarker", str(good_copy)).path == good_copy


def test_explicit_path_to_wrong_file(wrong_file):
    with pytest.raises(ModelFileError, match="sha256") as info:
        resolve_model("face_landmarker", wrong_file)
    assert str(wrong_file) in str(info.value) and ENTRY["sha256"][:12] in str(info.value)


def test_explicit_missing_path_does_not_fall_back(tmp_path):
    with pytest.raises(ModelFileError, match="does not exist"):
        resolve_model("face_landmarker", tmp_path / "absent.task")


def test_env_var_pointing_to_a_copy(good_copy, monkeypatch):
    monkeypatch.setenv(ENV, str(good_copy))
    resolved = resolve_model("face_landmarker")
    assert resolved.path == good_copy and resolved.sha256 == ENTRY["sha256"]


def test_env_var_to_wrong_file(wrong_file, monkeypatch):
    monkeypatch.setenv(ENV, str(wrong_file))
    with pytest.raises(ModelFileError, match="sha256"):
        resolve_model("face_landmarker")


def test_env_var_to_missing_file(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV, str(tmp_path / "absent.task"))
    with pytest.raises(ModelFileError, match=f"\\${ENV}"):
        resolve_model("face_landmarker")


def test_empty_env_var_is_ignored(packaged, monkeypatch):
    monkeypatch.setenv(ENV, "")
    assert resolve_model("face_landmarker").path == packaged.path


def test_explicit_path_beats_env_var(good_copy, wrong_file, monkeypatch):
    monkeypatch.setenv(ENV, str(wrong_file))
    assert resolve_model("face_landmarker", good_copy).path == good_copy


def test_nothing_found_says_how_to_stage_it(tmp_path, monkeypatch):
    registry = tmp_path / "models.json"
    entry = dict(ENTRY, packaged_in="no_such_package_for_fea_tests:models/face_landmarker.task")
    registry.write_text(json.dumps({"face_landmarker": entry}))
    monkeypatch.setattr(files, "REGISTRY", registry)
    with pytest.raises(ModelFileError) as info:
        resolve_model("face_landmarker")
    message = str(info.value)
    assert ENV in message and ENTRY["url"] in message and "offline" in message


def test_package_without_the_file(tmp_path, monkeypatch):
    registry = tmp_path / "models.json"
    registry.write_text(json.dumps({"face_landmarker": dict(ENTRY, packaged_in="pipeline:models/absent.task")}))
    monkeypatch.setattr(files, "REGISTRY", registry)
    with pytest.raises(ModelFileError, match="no face_landmarker.task found"):
        resolve_model("face_landmarker")


def test_landmarker_refuses_wrong_weights(wrong_file):
    from pipeline.models.landmarker import FaceLandmarker

    with pytest.raises(ModelFileError, match="sha256"):
        FaceLandmarker(str(wrong_file))


def test_loaded_landmarker_reports_its_weights(landmarker_stage):
    landmarker = landmarker_stage.landmarker
    assert landmarker.model.sha256 == ENTRY["sha256"]
    assert landmarker.version == f"mediapipe-face-landmarker@{ENTRY['sha256'][:12]}"
