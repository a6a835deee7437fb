"""Each image stage declares the Sample fields it reads, writes and drops; the plan checks the order of its steps
against those declarations before any worker starts, and the stages keep to what they declare."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import TEMPLATE_FILE, only, run_stage

from pipeline.builder.plan import check_fields, plan
from pipeline.builder.step import Step
from pipeline.config import AlignConfig, ConfigError, DecodeConfig, DetectConfig, SynergyConfig, load_config
from pipeline.domain.record import Sample
from pipeline.knowledge import packaged
from pipeline.stages.align import AlignStage
from pipeline.stages.au import AUStage
from pipeline.stages.decode import DecodeStage
from pipeline.stages.detect import DetectStage
from pipeline.stages.fingerprint import FingerprintStage
from pipeline.stages.measure import MeasureStage
from pipeline.stages.synergy import SynergyStage


def steps(knowledge, landmarker_stage) -> dict[str, Step]:
    detect = DetectStage(DetectConfig())
    detect.landmarker = landmarker_stage.landmarker
    config = load_config()
    return {
        "Decode": Step("Decode", DecodeStage(DecodeConfig())),
        "Detect": Step("Detect", detect),
        "Fingerprint": Step("Fingerprint", FingerprintStage(config.dedup)),
        "Align": Step("Align", AlignStage(AlignConfig(), TEMPLATE_FILE)),
        "Measure": Step("Measure", MeasureStage(knowledge.measures)),
        "AU": Step("AU", AUStage(knowledge.head, "mediapipe-test")),
        "Synergy": Step("Synergy", SynergyStage(SynergyConfig(), knowledge.prototypes)),
    }


def test_the_plans_of_every_backend_pass_the_check(tmp_path: Path) -> None:
    for overrides in ([], ["detect.landmarks=torch"], ["au.backend=torch-blendshapes"], ["dedup.enabled=false"]):
        plan(load_config(overrides=overrides), packaged(), tmp_path)  # check_fields runs inside


def test_a_misordered_step_is_a_clear_error_before_anything_runs(landmarker_stage) -> None:
    s = steps(packaged(), landmarker_stage)
    check_fields(list(s.values()))
    with pytest.raises(ConfigError, match="step Measure reads mesh, which no earlier step writes"):
        check_fields([s["Decode"], s["Measure"], s["Detect"]])
    with pytest.raises(ConfigError, match="step Measure reads mesh, which step AU drops before it"):
        check_fields([s["Decode"], s["Detect"], s["Align"], s["Measure"], s["AU"], s["Measure"]])
    with pytest.raises(ConfigError, match="step Fingerprint reads pixels, which step Align drops before it"):
        check_fields([s["Decode"], s["Detect"], s["Align"], s["Fingerprint"]])
    with pytest.raises(ConfigError, match="step AU reads face_measures, which no earlier step writes"):
        check_fields([s["Decode"], s["Detect"], s["Align"], s["AU"]])


def test_stages_write_and_drop_what_they_declare(landmarker_stage, demo_dir) -> None:
    """A real face through the image stages in order: after each, its declared writes hold values and its
    declared drops are gone."""
    from pipeline.domain.record import SourceItem

    element = SourceItem("test", "single_face.jpg", str(demo_dir / "single_face.jpg"), emotion="happiness")
    for step in steps(packaged(), landmarker_stage).values():
        stage = step.stage
        out = only(run_stage(stage, element))
        assert isinstance(out, Sample), (step.label, out)
        for field in stage.writes:
            assert getattr(out, field) is not None, f"{step.label} declares it writes {field}"
        for field in stage.drops:
            assert getattr(out, field) is None, f"{step.label} declares it drops {field}"
        for field in stage.reads - {"item"}:
            assert field in Sample.__dataclass_fields__, f"{step.label} reads an unknown field {field}"
        element = out
