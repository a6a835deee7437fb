"""The py-feat AU backend and the face-alignment (FAN) landmark backend, with weight files the tests create
(random parameters, real file names and formats): offline resolution, missing-weights errors, the stages on
real faces, and whole builds with each backend."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from benchmarks.random_weights import write_fan_2d, write_pyfeat_xgb_au
from pipeline.cli import main
from pipeline.config import AUConfig, load_config
from pipeline.knowledge import packaged
from pipeline.models import files
from pipeline.models.files import ModelFileError, resolve_weights
from pipeline.stages.align import five_points, five_points_from_68
from pipeline.stages.au_pyfeat import PyFeatAUMapping, PyFeatAUStage
from pipeline.stages.base import REJECTS
from tests.conftest import SCHEMAS, run_stage

BUILD = ["build", "--no-progress", "--no-validate", "--running-mode", "in_memory"]


@pytest.fixture(scope="session")
def pyfeat_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("pyfeat")
    write_pyfeat_xgb_au(folder)
    return folder


@pytest.fixture(scope="session")
def fan_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("fan")
    write_fan_2d(folder)
    return folder


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No weights anywhere: empty Hugging Face / torch hub caches, no environment variables."""
    empty = tmp_path / "empty-cache"
    empty.mkdir()
    monkeypatch.setattr(files, "_hub_caches", lambda: [empty])
    monkeypatch.setattr(files, "_torch_hub_checkpoints", lambda: empty)
    monkeypatch.delenv("FEA_PYFEAT_WEIGHTS", raising=False)
    monkeypatch.delenv("FEA_FAN_WEIGHTS", raising=False)
    return empty


def mapping() -> PyFeatAUMapping:
    return PyFeatAUMapping.load(SCHEMAS / "pyfeat_to_au.json", packaged().codes)


def test_mapping_covers_the_vocabulary_and_scales_probabilities() -> None:
    m = mapping()
    keys = ["AU1", "AU2", "AU4", "AU5", "AU6", "AU7", "AU9", "AU10", "AU11", "AU12", "AU14", "AU15", "AU17",
            "AU20", "AU23", "AU24", "AU25", "AU26", "AU28", "AU43"]  # py-feat's xgb output order
    probs = np.zeros((1, 20), dtype=np.float32)
    probs[0, keys.index("AU12")] = 0.8
    probs[0, keys.index("AU11")] = 1.0  # not in our vocabulary: dropped
    probs[0, keys.index("AU6")] = 0.4
    out = m.intensities(probs, keys)[0]
    assert out.shape == (len(m.codes),)
    assert out[m.codes.index("AU12")] == pytest.approx(4.0) and out[m.codes.index("AU6")] == pytest.approx(2.0)
    assert set(m.not_measured) == {"AU16", "AU18", "AU22", "AU27", "AU34"}
    assert all(out[m.codes.index(c)] == 0 for c in m.not_measured)
    assert m.present(out) == ["AU12"]  # threshold 2.5 = probability 0.5; AU11 has no column
    with pytest.raises(ValueError, match="AU12"):
        m.intensities(probs[:, :9], keys[:9])


def test_weights_found_in_a_folder_an_env_var_and_the_hf_cache(pyfeat_dir: Path, offline: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    found = resolve_weights("pyfeat_xgb_au", pyfeat_dir)
    assert found.path == pyfeat_dir / "xgb_au_classifier_v2.skops" and len(found.sha256) == 64
    monkeypatch.setenv("FEA_PYFEAT_WEIGHTS", str(pyfeat_dir))
    assert resolve_weights("pyfeat_xgb_au").path == found.path
    monkeypatch.delenv("FEA_PYFEAT_WEIGHTS")
    # The huggingface_hub cache layout, as `huggingface-cli download py-feat/xgb_au` leaves it.
    commit = "0" * 40
    snapshot = offline / "models--py-feat--xgb_au" / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (snapshot / "xgb_au_classifier_v2.skops").write_bytes(found.path.read_bytes())
    (offline / "models--py-feat--xgb_au" / "refs").mkdir()
    (offline / "models--py-feat--xgb_au" / "refs" / "main").write_text(commit)
    cached = resolve_weights("pyfeat_xgb_au")
    assert cached.path.parent == snapshot and cached.sha256 == found.sha256


def test_missing_weights_say_what_to_stage(offline: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match=r"huggingface-cli download py-feat/xgb_au xgb_au_classifier_v2\.skops"):
        resolve_weights("pyfeat_xgb_au")
    with pytest.raises(ModelFileError, match=r"2DFAN4-11f355bf06\.pth\.tar"):
        resolve_weights("fan_2d", tmp_path)


def test_skops_file_with_unexpected_types_is_refused(tmp_path: Path) -> None:
    from skops.io import dump

    from pipeline.models.pyfeat_au import PyFeatAU

    dump({"payload": Path("x")}, tmp_path / "xgb_au_classifier_v2.skops")  # pathlib is not on the allow-list
    with pytest.raises(ModelFileError, match="allow-list"):
        PyFeatAU(tmp_path, "cpu")


def test_cli_exits_3_with_staging_instructions(offline: Path, capsys: pytest.CaptureFixture) -> None:
    assert main([*BUILD, "--limit", "1", "--set", "au.backend=pyfeat"]) == 3
    err = capsys.readouterr().err
    assert "huggingface-cli download py-feat/xgb_au" in err and "set au.pyfeat_weights" in err
    assert main([*BUILD, "--limit", "1", "--set", "detect.landmarks=face-alignment"]) == 3
    err = capsys.readouterr().err
    assert "2DFAN4-11f355bf06.pth.tar" in err and "set detect.fan_weights" in err


def test_five_points_from_68_agree_with_the_mesh(wild_dir: Path, decode_file, make_detect) -> None:
    """iBUG-68 points sampled from the mesh (py-feat's map) give nearly the mesh's own five alignment points."""
    from feat.utils.blendshape_to_au import DLIB68_FROM_MP478

    detect = make_detect(multi_face="largest")
    for path in sorted((wild_dir / "images").glob("*.jpg"))[:5]:
        face = run_stage(detect, decode_file(path))[0]
        ours, theirs = five_points(face.mesh), five_points_from_68(face.mesh[list(DLIB68_FROM_MP478)])
        inter_ocular = np.linalg.norm(ours[0] - ours[1])
        assert np.abs(ours[[0, 1, 3, 4]] - theirs[[0, 1, 3, 4]]).max() < 0.1 * inter_ocular


def aligned_wild_faces(wild_dir: Path, decode_file, make_detect, make_align, n: int) -> list:
    detect, align = make_detect(multi_face="largest"), make_align()
    faces = []
    for path in sorted((wild_dir / "images").glob("*.jpg")):
        for face in run_stage(detect, decode_file(path)):
            faces += [s for s in run_stage(align, face) if not hasattr(s, "reason")]
        if len(faces) >= n:
            return faces[:n]
    return faces


def test_pyfeat_stage_on_real_faces(pyfeat_dir: Path, wild_dir: Path, decode_file, make_detect, make_align) -> None:
    faces = aligned_wild_faces(wild_dir, decode_file, make_detect, make_align, 6)
    faces[-1].align_matrix = None  # one face that cannot be used: its own reject, not the batch's
    stage = PyFeatAUStage(mapping(), str(pyfeat_dir), "cpu")
    stage.setup()
    outputs = list(stage.process(faces))
    rejects = [o.value for o in outputs if getattr(o, "tag", None) == REJECTS]
    kept = [o for o in outputs if getattr(o, "tag", None) != REJECTS]
    assert len(kept) == 5 and [(r.stage, r.reason) for r in rejects] == [("au", "no_landmarks")]
    vocab = mapping().codes
    for sample in kept:
        assert sample.au_intensity.shape == (len(vocab),) and sample.au_intensity.dtype == np.float32
        assert 0 <= sample.au_intensity.min() and sample.au_intensity.max() <= 5
        assert sample.au_source.startswith("model:pyfeat-xgb@2.1.5+") and "pyfeat-map@2" in sample.au_source
        assert sample.mesh is None
    # The random trees still depend on the face: not every face gets the same AUs.
    assert len({tuple(np.round(s.au_intensity, 4)) for s in kept}) > 1


def test_params_accept_the_new_backends() -> None:
    cfg = load_config(overrides=["au.backend=pyfeat", "detect.landmarks=face-alignment", "au.pyfeat_weights=/w"])
    assert (cfg.au.backend, cfg.detect.landmarks, cfg.au.pyfeat_weights) == ("pyfeat", "face-alignment", "/w")
    assert AUConfig().backend == "mediapipe"


def rows(out: Path, columns: list[str]) -> list[dict]:
    return pa.concat_tables(pq.read_table(f, columns=columns)
                            for f in sorted((out / "data").glob("*.parquet"))).to_pylist()


@pytest.mark.slow
def test_build_with_pyfeat_backend(pyfeat_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "pyfeat"
    assert main([*BUILD, "--limit", "8", "--set", "au.backend=pyfeat", "--set", f"au.pyfeat_weights={pyfeat_dir}",
                 "--set", "au.max_batch_size=4", "-o", str(out)]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["versions"]["au_model"].startswith("pyfeat-xgb@2.1.5+")
    assert manifest["models"]["pyfeat_xgb_au"]["path"] == "xgb_au_classifier_v2.skops"
    assert manifest["au_not_measured"] == ["AU16", "AU18", "AU22", "AU27", "AU34"]
    table = rows(out, ["au_intensity", "au_source", "au_model"])
    assert table and all(len(r["au_intensity"]) == len(manifest["au_vocabulary"]) for r in table)
    assert all(r["au_source"].startswith("model:pyfeat-xgb@") and r["au_model"].startswith("pyfeat-xgb@")
               for r in table)


@pytest.mark.slow
def test_build_with_fan_landmarks(fan_dir: Path, tmp_path: Path) -> None:
    common = [*BUILD, "--limit", "3", "--set", "align.min_face_px=0", "--set", "dedup.enabled=false"]
    assert main([*common, "-o", str(tmp_path / "mp")]) == 0
    assert main([*common, "--set", "detect.landmarks=face-alignment", "--set", f"detect.fan_weights={fan_dir}",
                 "--set", "detect.fan_device=cpu", "-o", str(tmp_path / "fan")]) == 0
    mp = {r["face_id"]: r for r in rows(tmp_path / "mp", ["face_id", "landmarks_5", "detector"])}
    fan = {r["face_id"]: r for r in rows(tmp_path / "fan", ["face_id", "landmarks_5", "detector"])}
    manifest = json.loads((tmp_path / "fan" / "manifest.json").read_text())
    counts = manifest["counts"]
    assert fan, f"no face kept with FAN landmarks: {counts}"
    assert all("+fan-2d@" in r["detector"] for r in fan.values())
    assert manifest["models"]["fan_2d"]["path"] == "2DFAN4-11f355bf06.pth.tar"
    # The faces were aligned by FAN's points (random weights: different from the mesh's), not the mesh's.
    shared = fan.keys() & mp.keys()
    assert shared and all(not np.allclose(fan[k]["landmarks_5"], mp[k]["landmarks_5"], atol=1) for k in shared)
