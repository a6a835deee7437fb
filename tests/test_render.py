"""Templates and the render stage: every phrasing renders, answers state exactly the labels, the
choice is deterministic, and broken or unsafe templates fail at load time."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import numpy as np
import pytest
from jinja2.sandbox import SecurityError

from pipeline.config import ConfigError, RenderConfig
from pipeline.domain.record import Instruction, Reject, Sample, SourceItem
from pipeline.domain.vocabulary import load_au_vocabulary
from pipeline.knowledge import packaged
from pipeline.stages.render import RenderStage, choose_tasks
from pipeline.templating import (
    EXAMPLE_CONTEXTS,
    IMAGE_TOKEN,
    TemplateError,
    TemplateLibrary,
    build_context,
    intensity_level,
)

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = ROOT / "templates"
VOCAB_PATH = ROOT / "schemas" / "au_vocabulary.csv"
EMOTIONS = json.loads((ROOT / "schemas" / "emotions.json").read_text())["canonical"]
PROTOTYPES = json.loads((ROOT / "schemas" / "emotion_prototypes.json").read_text())["emotions"]
VOCAB = load_au_vocabulary(VOCAB_PATH)
KNOWLEDGE = packaged()
CODES = [row["code"] for row in VOCAB]
AU_RE = re.compile(r"\bAU\d+\b")
# What each task's answer must state, for the families whose answers name nothing but the labels
# (the families that deny absent AUs or other emotions are checked in test_task_families.py).
MENTIONS = {
    "fe_recognition": {"emotion"},
    "au_recognition": {"aus"},
    "au_to_fe_reasoning": {"emotion", "aus"},
    "description": {"emotion", "aus"},
}
ALL_TASKS = {
    *MENTIONS, "fe_multiple_choice", "emotion_verification", "au_intensity", "au_verification", "fe_to_au",
    "mixed_cues", "multi_turn",
}


def make_sample(
    emotion: str | None,
    present: dict[str, float],
    evidence: list[str] | None = None,
    conflict: bool = False,
    consistency: float | None = 1.0,
    name: str = "x",
    measured: bool = True,
) -> Sample:
    intensity = np.zeros(len(CODES), dtype=np.float32)
    for code, value in present.items():
        intensity[CODES.index(code)] = value
    item = SourceItem(source="test", source_item=f"{name}.jpg", uri=f"/nowhere/{name}.jpg", emotion=emotion)
    return Sample(
        item=item,
        image_sha256=name,
        au_intensity=intensity if measured else None,
        au_present=list(present),
        evidence_aus=evidence or [],
        fe_au_consistency=consistency,
        fe_au_conflict=conflict,
    )


def varied_samples(n: int, seed: int = 7) -> list[Sample]:
    """Prototype faces, conflicting faces, AU-free faces and unlabelled faces."""
    rng = random.Random(seed)
    samples = []
    for i in range(n):
        emotion = rng.choice([*EMOTIONS, None])
        kind = rng.choice(["prototype", "conflict", "empty"])
        proto = PROTOTYPES[emotion] if emotion else {"core": [], "supporting": []}
        if kind == "prototype":
            codes = proto["core"] + rng.sample(proto["supporting"], k=min(1, len(proto["supporting"])))
        elif kind == "conflict":
            codes = rng.sample([c for c in CODES if c not in proto["core"]], k=rng.randint(1, 4))
        else:
            codes = []
        present = {c: round(rng.uniform(0.8, 5.0), 2) for c in codes}
        evidence = [c for c in codes if c in proto["core"] + proto["supporting"]] if emotion else []
        samples.append(
            make_sample(
                emotion,
                present,
                evidence,
                conflict=kind == "conflict" and emotion is not None,
                name=f"face{i}",
            )
        )
    return samples


def every_template_conversation():
    """(task, answer index, context, conversation) for every answer phrasing of every task over 60 varied
    faces and the example contexts, each turn at that answer index (modulo its count), question 0."""
    lib = TemplateLibrary(TEMPLATES)
    contexts = [build_context(s, KNOWLEDGE, f"0|{s.face_id}") for s in varied_samples(60)]
    contexts += [dict(c) for c in EXAMPLE_CONTEXTS]
    for task in lib.tasks:
        requires, turns = lib.requires(task), lib.turn_counts(task)
        for context in contexts:
            if ("emotion" in requires and context["emotion"] is None) or (
                    "conflict" in requires and not context["conflict"]):
                continue
            for a in range(max(n for _, n in turns)):
                _, conv = lib.render_turns(task, context, [(0, a % n) for _, n in turns])
                yield task, a, context, conv


@pytest.fixture(scope="module")
def library() -> TemplateLibrary:
    return TemplateLibrary(TEMPLATES)


def make_stage(**cfg: object) -> RenderStage:
    stage = RenderStage(RenderConfig(**cfg), TemplateLibrary(TEMPLATES))
    stage.setup()
    return stage


def check_conversation(conv: list[dict[str, str]]) -> None:
    assert len(conv) >= 2 and len(conv) % 2 == 0
    for i, turn in enumerate(conv):
        assert set(turn) == {"role", "content"}
        assert turn["role"] == ("user" if i % 2 == 0 else "assistant")
        assert turn["content"].strip()
    assert conv[0]["content"].startswith(IMAGE_TOKEN + "\n")
    assert sum(turn["content"].count(IMAGE_TOKEN) for turn in conv) == 1


def check_answer(task: str, answer: str, context: dict) -> None:
    """States exactly the labels: the emotion and every present AU where the task asks, nothing else."""
    emotion, codes = context["emotion"], set(context["au_codes"])
    lowered = answer.lower()
    if "emotion" in MENTIONS[task] and emotion:
        assert re.search(rf"\b{emotion}\b", lowered), (task, answer)
    for other in EMOTIONS:
        if other != emotion:
            assert not re.search(rf"\b{other}\b", lowered), (task, other, answer)
    mentioned = set(AU_RE.findall(answer))
    assert mentioned <= codes, (task, mentioned - codes, answer)
    if "aus" in MENTIONS[task]:
        assert mentioned == codes, (task, codes - mentioned, answer)
        for au in context["aus"]:
            assert f"{au['code']} ({au['name']}" in answer, (task, au["code"], answer)
        if not codes:
            assert "no clear action units" in lowered, (task, answer)
    if task == "au_to_fe_reasoning" and context["conflict"]:
        assert "only weakly support" in lowered, answer


# ----------------------------------------------------------------------------- library


def test_library_loads_all_task_families(library: TemplateLibrary) -> None:
    assert library.tasks == sorted(ALL_TASKS)
    assert re.fullmatch(r"[0-9a-f]{12}", library.version)
    assert set(RenderConfig().mix) <= set(library.tasks)
    for task in library.tasks:
        n_q, n_a = library.counts(task)
        assert n_q >= 6 and n_a >= 4
    assert library.requires("fe_recognition") == ("emotion",)
    assert "emotion" in library.requires("au_to_fe_reasoning")


def test_templates_do_not_contain_image_token() -> None:
    for path in TEMPLATES.glob("*.yaml"):
        assert IMAGE_TOKEN not in path.read_text(), path.name


@pytest.mark.parametrize("task", sorted(MENTIONS))
def test_every_phrasing_renders_and_states_exactly_the_labels(library: TemplateLibrary, task: str) -> None:
    samples = varied_samples(40)
    contexts = [build_context(s, KNOWLEDGE) for s in samples] + [dict(c) for c in EXAMPLE_CONTEXTS]
    n_q, n_a = library.counts(task)
    for context in contexts:
        if "emotion" in library.requires(task) and context["emotion"] is None:
            continue
        for q in range(n_q):
            for a in range(n_a):
                template_id, conv = library.render_choice(task, context, q, a)
                assert template_id.startswith(f"{task}/q{q}a{a}@")
                check_conversation(conv)
                check_answer(task, conv[1]["content"], context)
                # the question never leaks the answer
                question = conv[0]["content"].lower()
                assert not AU_RE.search(conv[0]["content"])
                assert not any(re.search(rf"\b{e}\b", question) for e in EMOTIONS)


def test_build_context() -> None:
    sample = make_sample(
        "happiness", {"AU6": 2.96, "AU12": 4.04, "AU25": 1.0}, ["AU12", "AU6", "AU9"], consistency=0.8
    )
    ctx = build_context(sample, KNOWLEDGE)
    assert ctx["emotion"] == "happiness"
    assert ctx["au_codes"] == ["AU12", "AU6", "AU25"]  # strongest first
    assert ctx["aus"][0] == {
        "code": "AU12",
        "number": 12,
        "name": "lip corner puller",
        "region": "lower",
        "muscle": "zygomaticus major",
        "intensity": 4.0,
        "level": "severe",
        "grade": "D",
        "graded": "AU12" in KNOWLEDGE.head.graded_codes,
    }
    assert ctx["aus"][1]["region"] == "upper" and ctx["aus"][1]["level"] == "marked"
    # the present AUs split by whether the head supports their levels, strongest first in each
    graded = KNOWLEDGE.head.graded_codes
    assert [au["code"] for au in ctx["graded_aus"]] == [c for c in ("AU12", "AU6", "AU25") if c in graded]
    assert [au["code"] for au in ctx["ungraded_aus"]] == [c for c in ("AU12", "AU6", "AU25") if c not in graded]
    assert [au["code"] for au in ctx["evidence_aus"]] == ["AU12", "AU6"]  # absent AU9 never cited
    assert ctx["consistency"] == 0.8 and ctx["conflict"] is False
    with pytest.raises(ValueError):
        build_context(make_sample(None, {"AU99": 2.0}), KNOWLEDGE)


def test_intensity_levels() -> None:
    assert [intensity_level(x) for x in (0.6, 1.0, 2.0, 3.0, 4.0, 5.0)] == [
        "trace",
        "trace",
        "slight",
        "marked",
        "severe",
        "maximum",
    ]


def test_vocabulary_loader() -> None:
    assert CODES[0] == "AU1" and len(CODES) == len(set(CODES))
    assert all(row["region"] in ("upper", "lower") and isinstance(row["number"], int) for row in VOCAB)


# ----------------------------------------------------------------------------- stage


def test_stage_outputs_are_valid_instructions() -> None:
    stage = make_stage(tasks_per_face=2)
    for sample in varied_samples(60):
        outputs = list(stage.run(sample))
        assert len(outputs) == 2
        assert all(isinstance(o, Instruction) for o in outputs)
        assert len({o.task for o in outputs}) == 2
        for inst in outputs:
            context = build_context(sample, KNOWLEDGE, f"0|{sample.face_id}|{inst.task}")
            assert inst.sample is sample
            assert inst.template_id.split("/")[0] == inst.task
            if sample.item.emotion is None:
                assert "emotion" not in stage.library.requires(inst.task)
            check_conversation(inst.conversations)
            if inst.task in MENTIONS:
                check_answer(inst.task, inst.conversations[1]["content"], context)


def test_stage_is_deterministic_and_seed_changes_the_mix() -> None:
    samples = varied_samples(50)

    def choices(seed: int) -> list[tuple[str, str, str]]:
        stage = make_stage(seed=seed)
        return [(o.task, o.template_id, o.conversations[1]["content"]) for s in samples for o in stage.run(s)]

    first = choices(0)
    assert first == choices(0)
    assert first != choices(1)
    template_ids = [tid for _, tid, _ in first]
    assert len(set(template_ids)) > 10  # the phrasings actually vary across faces


def test_weighted_choice_respects_mix() -> None:
    assert choose_tasks({"a": 1.0, "b": 0.0, "c": 1.0}, 3, "k") in (["a", "c"], ["c", "a"])
    picks = [choose_tasks({"a": 9.0, "b": 1.0}, 1, f"k{i}")[0] for i in range(400)]
    assert picks.count("a") > 300
    stage = make_stage(mix={"fe_recognition": 1.0, "au_recognition": 0.0}, tasks_per_face=4)
    for sample in varied_samples(20):
        tasks = [o.task for o in stage.run(sample) if isinstance(o, Instruction)]
        assert set(tasks) <= {"fe_recognition"}


def test_no_emotion_skips_emotion_tasks_and_rejects_when_nothing_fits() -> None:
    unlabelled = make_sample(None, {"AU4": 2.5}, name="u")
    stage = make_stage(tasks_per_face=len(ALL_TASKS))
    tasks = {o.task for o in stage.run(unlabelled)}
    assert tasks == {"au_recognition", "description", "au_intensity", "au_verification"}
    assert all("emotion" not in stage.library.requires(t) for t in tasks)

    only_fe = make_stage(mix={"fe_recognition": 1.0})
    (out,) = list(only_fe.run(unlabelled))
    assert isinstance(out, Reject)
    assert out.reason == "no_renderable_task" and out.stage == "render"
    assert out.reason in RenderStage.reasons

    unmeasured = make_sample("anger", {}, measured=False, name="m")
    (inst,) = list(
        make_stage(tasks_per_face=4, mix={"fe_recognition": 1.0, "description": 1.0}).run(unmeasured)
    )
    assert inst.task == "fe_recognition"


def test_unknown_task_in_mix_fails_where_the_stage_is_made() -> None:
    with pytest.raises(ConfigError, match="render.mix names tasks without templates: \\['nope'\\]"):
        RenderStage(RenderConfig(mix={"fe_recognition": 1.0, "nope": 1.0}), TemplateLibrary(TEMPLATES))


# ----------------------------------------------------------------------------- broken templates


def write_template(
    folder: Path, question: str = "What is shown?", answer: str = "It is {{ emotion }}.", task: str = "broken"
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    data = {
        "task": task,
        "version": "1",
        "requires": ["emotion"],
        "questions": ["Q1?", "Q2?", "Q3?", "Q4?", "Q5?", question],
        "answers": ["A {{ emotion }}.", "B {{ emotion }}.", "C {{ emotion }}.", answer],
    }
    (folder / f"{task}.yaml").write_text(json.dumps(data))  # JSON is valid YAML
    return folder


def test_valid_custom_template_dir_loads(tmp_path: Path) -> None:
    lib = TemplateLibrary(write_template(tmp_path))
    assert lib.tasks == ["broken"]
    other = TemplateLibrary(write_template(tmp_path / "b", answer="It is {{ emotion }}!"))
    assert other.version != lib.version


def test_undefined_variable_fails_at_load(tmp_path: Path) -> None:
    with pytest.raises(TemplateError, match=r"broken\.yaml: answers\[3\].*no_such_var"):
        TemplateLibrary(write_template(tmp_path, answer="It is {{ no_such_var }}."))


def test_undefined_attribute_fails_at_load(tmp_path: Path) -> None:
    with pytest.raises(TemplateError, match=r"answers\[3\]"):
        TemplateLibrary(write_template(tmp_path, answer="{{ aus[0].colour if aus else emotion }}"))


def test_syntax_error_fails_at_load(tmp_path: Path) -> None:
    with pytest.raises(TemplateError, match=r"broken\.yaml: questions\[5\]: syntax error"):
        TemplateLibrary(write_template(tmp_path, question="What {% if emotion %} is shown?"))


def test_sandbox_blocks_attribute_escape(tmp_path: Path) -> None:
    folder = write_template(tmp_path, answer="{{ ''.__class__.__mro__ }}")
    with pytest.raises(SecurityError):
        TemplateLibrary(folder)
    with pytest.raises(TemplateError, match=r"answers\[3\]"):
        TemplateLibrary(folder)


def test_image_token_and_bad_structure_rejected(tmp_path: Path) -> None:
    with pytest.raises(TemplateError, match="<image>"):
        TemplateLibrary(write_template(tmp_path / "a", question="<image> What is shown?"))
    short = write_template(tmp_path / "b")
    (short / "broken.yaml").write_text("task: broken\nversion: 1\nquestions: [a]\nanswers: [b]\n")
    with pytest.raises(TemplateError, match="questions"):
        TemplateLibrary(short)
    with pytest.raises(TemplateError, match="no \\*.yaml"):
        TemplateLibrary(tmp_path / "empty")
