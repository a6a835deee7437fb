"""Blendshapes -> AU intensities through the mapping kept as data, and the FE-AU consistency score that
flags (or rejects) labels the measured AUs do not support."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import SCHEMAS, assert_reject, only, run_stage

from pipeline.config import SynergyConfig
from pipeline.record import Sample, SourceItem
from pipeline.stages.au import INTENSITY_MAX, AUStage, BlendshapeAUMapping
from pipeline.stages.synergy import Prototypes, SynergyStage
from pipeline.vocabulary import load_au_vocabulary

MAPPING = SCHEMAS / "blendshape_to_au.json"
THRESHOLDS = SCHEMAS / "au_thresholds.json"
VOCABULARY = SCHEMAS / "au_vocabulary.csv"
BLENDSHAPES = SCHEMAS / "blendshapes.json"
NAMES = json.loads(BLENDSHAPES.read_text())["names"]
CODES = [row["code"] for row in load_au_vocabulary(VOCABULARY)]


@pytest.fixture(scope="module")
def mapping() -> BlendshapeAUMapping:
    return BlendshapeAUMapping.load(MAPPING, THRESHOLDS, VOCABULARY, BLENDSHAPES)


@pytest.fixture(scope="module")
def prototypes() -> Prototypes:
    return Prototypes.load(SCHEMAS / "emotion_prototypes.json")


def blendshapes(**scores: float) -> np.ndarray:
    vector = np.zeros(len(NAMES), dtype=np.float32)
    for name, value in scores.items():
        vector[NAMES.index(name)] = value
    return vector


def intensity_of(mapping: BlendshapeAUMapping, code: str, vector: np.ndarray) -> float:
    return float(mapping.intensities(vector)[mapping.codes.index(code)])


def labelled(emotion: str | None, present: list[str]) -> Sample:
    return Sample(SourceItem("test", "x.jpg", "/nowhere/x.jpg", emotion=emotion), image_sha256="abc",
                  au_present=list(present))


def write_mapping(tmp_path: Path, edit) -> Path:
    spec = json.loads(MAPPING.read_text())
    edit(spec["aus"])
    path = tmp_path / "mapping.json"
    path.write_text(json.dumps(spec))
    return path


# --- mapping -----------------------------------------------------------------------------------------


def test_mapping_loads_in_vocabulary_order(mapping):
    assert mapping.codes == CODES
    assert mapping.weights.shape == (len(CODES), 52) == (len(CODES), len(NAMES))
    assert (mapping.weights.sum(1) >= 1).all(), "every AU is made of at least one blendshape"
    assert (mapping.ceiling > mapping.floor).all()
    assert mapping.thresholds.shape == (len(CODES),)
    assert mapping.version.startswith("blendshape-map@")


def test_all_zero_blendshapes_give_zero_intensities(mapping):
    intensity = mapping.intensities(np.zeros(52, dtype=np.float32))
    assert intensity.shape == (len(CODES),) and intensity.dtype == np.float32
    assert (intensity == 0).all()
    assert mapping.present(intensity) == []


def test_strong_smile_is_au12(mapping):
    vector = blendshapes(mouthSmileLeft=0.9, mouthSmileRight=0.9)
    intensity = mapping.intensities(vector)
    assert intensity[CODES.index("AU12")] >= 4
    assert "AU12" in mapping.present(intensity)
    assert mapping.present(intensity) == ["AU12"]  # nothing unrelated fires


def test_one_sided_smile_counts_half_with_mean(mapping):
    both = intensity_of(mapping, "AU12", blendshapes(mouthSmileLeft=0.6, mouthSmileRight=0.6))
    one = intensity_of(mapping, "AU12", blendshapes(mouthSmileLeft=0.6))
    assert 0 <= one < both


def test_max_combine_takes_the_strongest_member(mapping):
    assert not mapping.combine_max[CODES.index("AU12")] and mapping.combine_max[CODES.index("AU6")]
    left = intensity_of(mapping, "AU6", blendshapes(eyeSquintLeft=0.9))
    both = intensity_of(mapping, "AU6", blendshapes(eyeSquintLeft=0.9, eyeSquintRight=0.9))
    assert left == pytest.approx(both) and left > 0


def test_intensities_are_clipped_to_scale(mapping):
    high = mapping.intensities(np.ones(52, dtype=np.float32))
    assert (high <= INTENSITY_MAX).all() and (high >= 0).all()
    assert high.max() == INTENSITY_MAX
    low = mapping.intensities(np.full(52, -3.0, dtype=np.float32))
    assert (low == 0).all()
    over = mapping.intensities(np.full(52, 7.0, dtype=np.float32))
    assert (over == INTENSITY_MAX).all()


def test_intensities_are_monotonic(mapping):
    values = [intensity_of(mapping, "AU12", blendshapes(mouthSmileLeft=v, mouthSmileRight=v))
              for v in np.linspace(0, 1, 11)]
    assert values == sorted(values)


def test_batched_intensities_match_single(mapping):
    rng = np.random.default_rng(0)
    batch = rng.random((5, 52), dtype=np.float32)
    rows = np.stack([mapping.intensities(row) for row in batch])
    assert mapping.intensities(batch).shape == (5, len(CODES))
    assert np.allclose(mapping.intensities(batch), rows)


def test_present_uses_thresholds(mapping):
    intensity = np.zeros(len(CODES), dtype=np.float32)
    intensity[CODES.index("AU12")] = mapping.thresholds[CODES.index("AU12")]
    intensity[CODES.index("AU4")] = mapping.thresholds[CODES.index("AU4")] - 0.01
    assert mapping.present(intensity) == ["AU12"]


def test_unknown_blendshape_is_an_error(tmp_path):
    path = write_mapping(tmp_path, lambda aus: aus["AU12"]["blendshapes"].append("mouthSmileCentre"))
    with pytest.raises(ValueError, match="mouthSmileCentre"):
        BlendshapeAUMapping.load(path, THRESHOLDS, VOCABULARY, BLENDSHAPES)


def test_missing_vocabulary_au_is_an_error(tmp_path):
    path = write_mapping(tmp_path, lambda aus: aus.pop("AU43"))
    with pytest.raises(ValueError, match="AU43"):
        BlendshapeAUMapping.load(path, THRESHOLDS, VOCABULARY, BLENDSHAPES)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [("blendshapes", [], "no blendshapes"), ("ceiling", 0.15, "ceiling > floor"), ("combine", "median", "combine")],
)
def test_degenerate_au_entry_is_an_error(tmp_path, field, value, message):
    path = write_mapping(tmp_path, lambda aus: aus["AU12"].__setitem__(field, value))
    with pytest.raises(ValueError, match=message):
        BlendshapeAUMapping.load(path, THRESHOLDS, VOCABULARY, BLENDSHAPES)


def test_thresholds_file_missing_an_au_defaults_to_one(tmp_path):
    spec = json.loads(THRESHOLDS.read_text())
    del spec["thresholds"]["AU12"]
    spec["thresholds"]["AU4"] = 2.5
    path = tmp_path / "thresholds.json"
    path.write_text(json.dumps(spec))
    mapping = BlendshapeAUMapping.load(MAPPING, path, VOCABULARY, BLENDSHAPES)
    assert mapping.thresholds[CODES.index("AU12")] == 1.0
    assert mapping.thresholds[CODES.index("AU4")] == 2.5


# --- AU stage ----------------------------------------------------------------------------------------


def test_au_stage_on_real_smile(mapping, make_detect, demo_sample):
    face = only(run_stage(make_detect(), demo_sample("0-f15-hao-ph.jpg")))  # coded "ha": happiness
    out = only(run_stage(AUStage(mapping, "mediapipe-test"), face))
    assert isinstance(out, Sample)
    assert out.au_intensity.shape == (len(CODES),)
    assert "AU12" in out.au_present
    assert out.au_source == f"model:mediapipe-test+{mapping.version}"
    assert out.mesh is None  # the AU stage is the mesh's last user


def test_au_stage_on_real_surprise(mapping, make_detect, demo_sample):
    face = only(run_stage(make_detect(), demo_sample("0-f1-su-ph.jpg")))  # coded "su": surprise
    out = only(run_stage(AUStage(mapping, "m"), face))
    assert {"AU1", "AU2"} <= set(out.au_present)
    assert "AU12" not in out.au_present


@pytest.mark.parametrize("scores", [None, np.full(52, np.nan, dtype=np.float32)])
def test_au_stage_rejects_unusable_blendshapes(mapping, scores):
    sample = labelled(None, [])
    sample.blendshapes = scores
    assert_reject(only(run_stage(AUStage(mapping, "m"), sample)), "au", "no_blendshapes")


# --- prototypes and synergy --------------------------------------------------------------------------


def test_prototypes_cover_the_canonical_emotions_with_vocabulary_aus(prototypes):
    canonical = json.loads((SCHEMAS / "emotions.json").read_text())["canonical"]
    assert set(prototypes.table) == set(canonical)
    for emotion, proto in prototypes.table.items():
        assert set(proto["core"]) | set(proto["supporting"]) <= set(CODES), emotion
    assert prototypes.neutral_tolerance >= 1


def test_happiness_with_core_aus(prototypes):
    assert prototypes.score("happiness", ["AU6", "AU12"]) == (1.0, ["AU6", "AU12"])


def test_happiness_partial_and_supporting(prototypes):
    assert prototypes.score("happiness", ["AU12"]) == (0.5, ["AU12"])
    assert prototypes.score("happiness", ["AU12", "AU25"]) == (0.75, ["AU12", "AU25"])
    score, evidence = prototypes.score("happiness", ["AU6", "AU12", "AU25", "AU4"])
    assert score == 1.0 and evidence == ["AU6", "AU12", "AU25"], "capped at 1; unrelated AUs are no evidence"
    assert prototypes.score("happiness", ["AU4", "AU15"]) == (0.0, [])


def test_neutral(prototypes):
    assert prototypes.score("neutral", []) == (1.0, [])
    assert prototypes.score("neutral", ["AU1", "AU2", "AU4"]) == (0.0, [])
    assert prototypes.score("neutral", ["AU1", "AU2", "AU4", "AU5", "AU6"])[0] == 0.0
    assert prototypes.score("neutral", ["AU12"])[0] == pytest.approx(1 - 1 / prototypes.neutral_tolerance)


@pytest.mark.parametrize(
    ("policy", "rejected", "flagged"), [("keep", False, False), ("flag", False, True), ("reject", True, False)]
)
def test_conflict_policies(prototypes, policy, rejected, flagged):
    stage = SynergyStage(SynergyConfig(conflict_policy=policy, conflict_threshold=0.34), prototypes)
    out = only(run_stage(stage, labelled("happiness", ["AU4"])))
    if rejected:
        reject = assert_reject(out, "synergy", "fe_au_conflict")
        assert "happiness" in reject.detail and reject.image_sha256 == "abc"
    else:
        assert isinstance(out, Sample)
        assert out.fe_au_consistency == 0.0 and out.evidence_aus == []
        assert out.fe_au_conflict is flagged


@pytest.mark.parametrize("policy", ["keep", "flag", "reject"])
def test_consistent_label_passes_every_policy(prototypes, policy):
    stage = SynergyStage(SynergyConfig(conflict_policy=policy), prototypes)
    out = only(run_stage(stage, labelled("happiness", ["AU6", "AU12"])))
    assert isinstance(out, Sample) and out.fe_au_consistency == 1.0 and not out.fe_au_conflict
    assert out.evidence_aus == ["AU6", "AU12"]


def test_score_at_threshold_is_not_a_conflict(prototypes):
    stage = SynergyStage(SynergyConfig(conflict_policy="reject", conflict_threshold=0.5), prototypes)
    out = only(run_stage(stage, labelled("happiness", ["AU12"])))  # exactly 0.5
    assert isinstance(out, Sample) and out.fe_au_consistency == 0.5 and not out.fe_au_conflict


@pytest.mark.parametrize("policy", ["keep", "flag", "reject"])
def test_unlabelled_gets_no_score(prototypes, policy):
    stage = SynergyStage(SynergyConfig(conflict_policy=policy), prototypes)
    out = only(run_stage(stage, labelled(None, [])))
    assert isinstance(out, Sample)
    assert out.fe_au_consistency is None and out.evidence_aus == [] and out.fe_au_conflict is False
