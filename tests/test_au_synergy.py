"""The FE-AU consistency score that flags (or rejects) labels the measured AUs do not support."""

from __future__ import annotations

import json

import pytest
from conftest import SCHEMAS, assert_reject, only, run_stage

from pipeline.config import SynergyConfig
from pipeline.domain.record import Sample, SourceItem
from pipeline.domain.vocabulary import load_au_vocabulary
from pipeline.stages.synergy import Prototypes, SynergyStage

CODES = [row["code"] for row in load_au_vocabulary(SCHEMAS / "au_vocabulary.csv")]


@pytest.fixture(scope="module")
def prototypes() -> Prototypes:
    return Prototypes.load(SCHEMAS / "emotion_prototypes.json")


def labelled(emotion: str | None, present: list[str]) -> Sample:
    return Sample(SourceItem("test", "x.jpg", "/nowhere/x.jpg", emotion=emotion), image_sha256="abc",
                  au_present=list(present))


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
