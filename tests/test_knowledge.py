"""The knowledge object and the plan: loaded once from the config, cheap to hand to workers, the same
vocabulary for what is rendered and what is verified, and a plan that refuses what cannot work before any
worker starts."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from pipeline.builder.backends import AU_BACKENDS, LANDMARK_BACKENDS
from pipeline.builder.plan import plan
from pipeline.cli import main
from pipeline.config import ConfigError, RenderConfig, load_config
from pipeline.domain.data import data_file
from pipeline.domain.record import Instruction, Sample, SourceItem
from pipeline.grounding import verify
from pipeline.knowledge import Knowledge, packaged
from pipeline.stages.render import RenderStage
from pipeline.stages.verify import VerifyStage
from pipeline.templating import TemplateLibrary, build_context

TEMPLATES = Path(__file__).resolve().parents[1] / "templates"
NAME = "zygo widget"  # a name for AU12 that the packaged vocabulary and lexicon do not know


@pytest.fixture(scope="module")
def renamed(tmp_path_factory: pytest.TempPathFactory) -> Knowledge:
    """The knowledge of a build run with `--set au.vocabulary=FILE`, FILE naming AU12 differently."""
    text = data_file("au_vocabulary.csv").read_text().replace("AU12,12,lip corner puller,", f"AU12,12,{NAME},")
    vocabulary = tmp_path_factory.mktemp("vocab") / "au_vocabulary.csv"
    vocabulary.write_text(text)
    return Knowledge.load(load_config(overrides=[f"au.vocabulary={vocabulary}"]))


def smiling(name: str = "x") -> Sample:
    knowledge = packaged()
    intensity = np.zeros(len(knowledge.codes), dtype=np.float32)
    intensity[knowledge.codes.index("AU12")] = 3.0
    return Sample(SourceItem("t", f"{name}.jpg", f"/x/{name}.jpg", emotion="happiness"), image_sha256=name,
                  au_intensity=intensity, au_present=["AU12"], evidence_aus=["AU12"], fe_au_consistency=0.5)


def test_knowledge_pickles_small_and_keeps_its_identity() -> None:
    knowledge = packaged()
    blob = pickle.dumps(knowledge)
    # Handed to every worker with the stages; most of it is the AU head's appearance projection (20 x 1568 float32).
    assert len(blob) < 200_000
    again = pickle.loads(blob)
    assert again.fingerprint == knowledge.fingerprint and again.codes == knowledge.codes
    assert again.head.tag == knowledge.head.tag
    mesh = np.random.default_rng(0).normal(size=(478, 3)) * 50
    assert np.array_equal(again.measures.compute(mesh), knowledge.measures.compute(mesh))


def test_the_configured_vocabulary_is_rendered_and_verified(renamed: Knowledge) -> None:
    assert renamed.fingerprint != packaged().fingerprint
    context = build_context(smiling(), renamed)
    assert context["aus"][0]["name"] == NAME
    stage = RenderStage(RenderConfig(mix={"description": 1.0}, tasks_per_face=1), TemplateLibrary(TEMPLATES, renamed))
    texts = [turn["content"] for inst in stage.run(smiling()) for turn in inst.conversations]
    assert any(NAME in text for text in texts), texts

    denial = f"The {NAME} is not active."
    verdict = verify(denial, "happiness", ["AU12"], "description", renamed)
    assert not verdict.grounded and verdict.reasons == (f"denies present AU12 ({NAME})",)
    assert verify(denial, "happiness", ["AU12"], "description").grounded  # the packaged lexicon has no such name


def test_the_verify_stage_reads_with_the_builds_vocabulary(renamed: Knowledge) -> None:
    def verdict(stage: VerifyStage) -> str | None:
        inst = Instruction(smiling(), "description", "t/q0a0@1", [
            {"role": "user", "content": "<image>\nDescribe the face."},
            {"role": "assistant", "content": f"A happy face, though the {NAME} is absent."}])
        (out,) = stage.run(inst)
        return out.grounding_verdict

    assert verdict(VerifyStage(renamed)) == "ungrounded"
    assert verdict(VerifyStage()) == "grounded"


def test_validation_rereads_answers_with_the_builds_vocabulary(renamed: Knowledge) -> None:
    """The release check re-verifies the written answers with the same knowledge as the verify stage."""
    import pandas as pd

    from pipeline.validate.dataset_checks import answers_agree_with_labels

    frame = pd.DataFrame([{"sample_id": "s1", "emotion": "happiness", "au_present": ["AU12"], "task": "description",
                           "conversations": [{"role": "user", "content": "<image>\nDescribe the face."},
                                             {"role": "assistant", "content": f"A smile; the {NAME} is absent."}]}])
    assert not answers_agree_with_labels(frame, knowledge=renamed).success
    assert answers_agree_with_labels(frame).success  # the packaged lexicon has no such name


def test_the_plan_hands_the_builds_knowledge_to_render_and_verify(renamed: Knowledge, tmp_path: Path) -> None:
    steps = plan(load_config(), renamed, tmp_path)
    by_label = {step.label: step.stage for step in steps.faces}
    assert by_label["Render"].library.knowledge is renamed and by_label["Verify"].knowledge is renamed
    assert [step.label for step in steps.image] == ["Decode", "Detect", "Fingerprint", "Align", "Measure", "AU",
                                                      "Synergy"]
    assert steps.versions["au_model"] == f"{steps.versions['detector']}+{renamed.head.tag}"


def test_an_unknown_task_in_render_mix_fails_in_the_driver(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    config = load_config(overrides=["render.mix={fe_recognition: 1.0, nope: 1.0}"])
    with pytest.raises(ConfigError, match=r"render.mix names tasks without templates: \['nope'\]"):
        plan(config, packaged(), tmp_path)
    assert main(["build", "--no-progress", "--no-validate", "--limit", "1", "-o", str(tmp_path / "out"),
                 "--set", "render.mix={nope: 1.0}"]) == 2
    assert "render.mix names tasks without templates: ['nope']" in capsys.readouterr().err
    assert not (tmp_path / "out.partial").exists()  # nothing ran


def test_backends_are_named_by_their_registries_only(tmp_path: Path, capsys) -> None:
    assert {"auto", "mediapipe", "torch", "face-alignment"} <= set(LANDMARK_BACKENDS)
    assert {"mediapipe", "torch-blendshapes", "pyfeat"} <= set(AU_BACKENDS)
    for param, known in (("detect.landmarks", LANDMARK_BACKENDS), ("au.backend", AU_BACKENDS)):
        with pytest.raises(ConfigError, match=f"{param}: unknown backend 'nope'; known: {', '.join(sorted(known))}"):
            plan(load_config(overrides=[f"{param}=nope"]), packaged(), tmp_path)
    assert main(["build", "--no-progress", "--no-validate", "--limit", "1", "-o", str(tmp_path / "out"),
                 "--set", "au.backend=nope"]) == 2
    assert "au.backend: unknown backend 'nope'" in capsys.readouterr().err
    assert not (tmp_path / "out.partial").exists()  # stopped before anything ran


def test_configured_backends_plan_their_steps(tmp_path: Path) -> None:
    steps = plan(load_config(overrides=["au.backend=torch-blendshapes", "au.max_batch_size=8"]), packaged(), tmp_path)
    blendshapes, au = steps.au.steps
    assert (blendshapes.label, blendshapes.batch_size, au.label, au.batch_size) == ("Blendshapes", 8, "AU", None)
    assert steps.versions["au_model"].startswith("torch-blendshapes@")
    assert steps.au.head is not None and steps.au.intensity_scale.startswith("0-5 continuous")


def test_an_unpickled_library_compiles_once_per_process_and_knowledge(renamed: Knowledge) -> None:
    """Beam unpickles a DoFn for every bundle processor: the copies share one compilation, per knowledge."""
    library = TemplateLibrary(TEMPLATES)
    first, second = pickle.loads(pickle.dumps(library)), pickle.loads(pickle.dumps(library))
    assert first.templates is second.templates and first.tasks == library.tasks and first.version == library.version
    other = pickle.loads(pickle.dumps(TemplateLibrary(TEMPLATES, renamed)))
    assert other.templates is not first.templates and other.knowledge.fingerprint == renamed.fingerprint
