"""The task families beyond plain recognition: every answer is right with respect to the labels, the
question subjects are balanced and deterministic, and multi-turn conversations are well formed.

Faces are real-ish: prototype, partial, random and AU-free expressions whose consistency and conflict
flag come from the real synergy stage; rows come from the real render stage and templates.
"""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from pipeline.config import RenderConfig, SynergyConfig
from pipeline.domain.record import Instruction, Sample, SourceItem
from pipeline.domain.vocabulary import load_au_vocabulary
from pipeline.knowledge import packaged
from pipeline.stages.render import RenderStage
from pipeline.stages.synergy import Prototypes, SynergyStage
from pipeline.templating import EXAMPLE_CONTEXTS, IMAGE_TOKEN, TemplateError, TemplateLibrary, build_context

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = ROOT / "templates"
VOCAB_PATH = ROOT / "schemas" / "au_vocabulary.csv"
PROTOTYPES_PATH = ROOT / "schemas" / "emotion_prototypes.json"
EMOTIONS = json.loads((ROOT / "schemas" / "emotions.json").read_text())["canonical"]
ADJECTIVES = json.loads((ROOT / "schemas" / "emotions.json").read_text())["adjectives"]
PROTOTYPES = Prototypes.load(PROTOTYPES_PATH)
VOCAB = load_au_vocabulary(VOCAB_PATH)
CODES = [row["code"] for row in VOCAB]
NAMES = {row["code"]: row["name"] for row in VOCAB}
AU_RE = re.compile(r"\bAU\d+\b")
DENIAL = re.compile(r"not present|not active|no sign of|not appear|absent\b", re.IGNORECASE)
ALL_TASKS = sorted(RenderConfig().mix)


def grade(value: float) -> tuple[str, str]:
    """FACS letter and level word of a 0-5 intensity, computed independently of the templating code."""
    bin_ = min(5, max(1, int(np.floor(value + 0.5))))
    return "ABCDE"[bin_ - 1], ("trace", "slight", "marked", "severe", "maximum")[bin_ - 1]


def face(i: int, rng: random.Random) -> Sample:
    emotion = rng.choice([*EMOTIONS, None])
    proto = PROTOTYPES.table[emotion] if emotion else {"core": [], "supporting": []}
    kind = rng.choice(["prototype", "partial", "random", "empty"])
    if kind == "prototype":
        codes = list(proto["core"]) + rng.sample(proto["supporting"], k=min(1, len(proto["supporting"])))
    elif kind == "partial":
        codes = rng.sample(proto["core"], k=len(proto["core"]) // 2) + rng.sample(CODES, k=rng.randint(0, 2))
    elif kind == "random":
        codes = rng.sample(CODES, k=rng.randint(1, 5))
    else:
        codes = []
    codes = list(dict.fromkeys(codes))
    intensity = np.zeros(len(CODES), dtype=np.float32)
    for code in CODES:  # sub-threshold activity on absent AUs, as a real extractor gives
        intensity[CODES.index(code)] = rng.uniform(0.0, 0.9)
    for code in codes:
        intensity[CODES.index(code)] = rng.uniform(1.0, 5.0)
    item = SourceItem("test", f"face{i}.jpg", f"/nowhere/face{i}.jpg", emotion=emotion)
    sample = Sample(item, image_sha256=f"{i:064x}", au_intensity=intensity, au_present=codes)
    (scored,) = SynergyStage(SynergyConfig(), PROTOTYPES).run(sample)
    return scored


def faces(n: int, seed: int = 3) -> list[Sample]:
    rng = random.Random(seed)
    return [face(i, rng) for i in range(n)]


@pytest.fixture(scope="module")
def library() -> TemplateLibrary:
    return TemplateLibrary(TEMPLATES)


@pytest.fixture(scope="module")
def samples() -> list[Sample]:
    return faces(120)


def stage(**cfg: object) -> RenderStage:
    s = RenderStage(RenderConfig(**cfg), TemplateLibrary(TEMPLATES))
    s.setup()
    return s


def context(sample: Sample, task: str, seed: int = 0) -> dict:
    return build_context(sample, packaged(), f"{seed}|{sample.face_id}|{task}")


def every_phrasing(library: TemplateLibrary, task: str, ctx: dict):
    n_q, n_a = library.counts(task)
    for q in range(n_q):
        for a in range(n_a):
            _, conv = library.render_choice(task, ctx, q, a)
            yield conv[0]["content"], conv[1]["content"]


def sentences(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.;:])\s+|\n", text) if s.strip()]


def other_emotions_named(text: str, allowed: set[str]) -> set[str]:
    lowered = text.lower()
    return {e for e in EMOTIONS if e not in allowed and re.search(rf"\b({e}|{ADJECTIVES[e]})\b", lowered)}


def check_turns(conv: list[dict[str, str]]) -> None:
    assert [t["role"] for t in conv] == ["user", "assistant"] * (len(conv) // 2)
    assert conv[0]["content"].startswith(IMAGE_TOKEN + "\n")
    assert sum(t["content"].count(IMAGE_TOKEN) for t in conv) == 1
    assert all(t["content"].strip() for t in conv)


# ----------------------------------------------------------------------------- multiple choice


def options_of(question: str) -> dict[str, str]:
    found = dict(re.findall(r"\(?\b([A-D])[.):]\)?\s+([a-z]+)", question))
    assert sorted(found) == ["A", "B", "C", "D"], question
    return found


def test_multiple_choice_letter_is_the_labels_option(library: TemplateLibrary, samples: list[Sample]) -> None:
    for sample in samples:
        if sample.item.emotion is None:
            continue
        ctx = context(sample, "fe_multiple_choice")
        for question, answer in every_phrasing(library, "fe_multiple_choice", ctx):
            options = options_of(question)
            assert len(set(options.values())) == 4 and set(options.values()) <= set(EMOTIONS)
            (letter,) = [k for k, v in options.items() if v == sample.item.emotion]
            assert answer.split()[-1].strip(".") == sample.item.emotion or sample.item.emotion in answer
            assert re.match(rf"^(Option |The answer is )?{letter}\b", answer), (letter, answer)
            assert not other_emotions_named(answer, {sample.item.emotion}), answer


def test_multiple_choice_letter_is_uniform_and_order_varies() -> None:
    letters: Counter[str] = Counter()
    orders = set()
    for i in range(2000):
        emotion = EMOTIONS[i % len(EMOTIONS)]
        sample = Sample(SourceItem("t", f"{i}", f"{i}", emotion=emotion), image_sha256=f"{i}",
                        au_intensity=np.zeros(len(CODES), dtype=np.float32))
        ctx = context(sample, "fe_multiple_choice")
        letters[ctx["mc_answer"]] += 1
        orders.add(tuple(o["emotion"] for o in ctx["mc_options"]))
    assert set(letters) == set("ABCD")
    assert all(0.21 <= n / 2000 <= 0.29 for n in letters.values()), letters
    assert len(orders) > 1000  # distractors and their order are not a fixed pattern


def test_probes_are_deterministic_and_seeded(samples: list[Sample]) -> None:
    keys = ("mc_options", "probe_au", "probe_emotion", "focus_au")
    same = [[context(s, "x")[k] for k in keys] for s in samples]
    assert same == [[context(s, "x")[k] for k in keys] for s in samples]
    other_seed = [[context(s, "x", seed=1)[k] for k in keys] for s in samples]
    assert sum(a != b for a, b in zip(same, other_seed, strict=True)) > len(samples) // 2
    other_task = [[context(s, "y")[k] for k in keys] for s in samples]
    assert other_task != same


# ----------------------------------------------------------------------------- yes / no


def test_au_verification_answers_are_right(library: TemplateLibrary, samples: list[Sample]) -> None:
    for sample in samples:
        ctx = context(sample, "au_verification")
        probe = ctx["probe_au"]["code"]
        present = probe in sample.au_present
        for question, answer in every_phrasing(library, "au_verification", ctx):
            assert probe in question or f"action unit {probe[2:]} " in question, question
            assert answer.startswith("Yes" if present else "No"), (probe, sample.au_present, answer)
            for sentence in sentences(answer):
                named = set(AU_RE.findall(sentence))
                if DENIAL.search(sentence):
                    assert named <= {probe} and not present, answer
                else:
                    assert named <= set(sample.au_present), answer


def test_emotion_verification_answers_are_right(library: TemplateLibrary, samples: list[Sample]) -> None:
    for sample in samples:
        if sample.item.emotion is None:
            continue
        ctx = context(sample, "emotion_verification")
        probe, label = ctx["probe_emotion"], sample.item.emotion
        for question, answer in every_phrasing(library, "emotion_verification", ctx):
            assert probe in question or ADJECTIVES[probe] in question
            assert answer.startswith("Yes" if probe == label else "No"), (probe, label, answer)
            if probe != label and answer != "No.":
                assert label in answer  # a "no" gives the right emotion
                # the wrong emotion only in the denial: "does not look angry", "not fear", "rather than fear"
                for sentence in sentences(answer):
                    if other_emotions_named(sentence, {label}):
                        assert re.search(r"\bnot\b|rather than", sentence), answer


def test_yes_no_balance() -> None:
    many = faces(1500, seed=11)
    au_yes = [context(s, "au_verification")["probe_au_present"] for s in many if s.au_present]
    fe_yes = [context(s, "emotion_verification")["probe_emotion_matches"] for s in many if s.item.emotion]
    assert 0.45 <= sum(au_yes) / len(au_yes) <= 0.55, sum(au_yes) / len(au_yes)
    assert 0.45 <= sum(fe_yes) / len(fe_yes) <= 0.55, sum(fe_yes) / len(fe_yes)
    # an AU-free face can only be asked about an absent AU
    assert not any(context(s, "au_verification")["probe_au_present"] for s in many if not s.au_present)
    wrong = Counter(context(s, "emotion_verification")["probe_emotion"] for s in many
                    if s.item.emotion and not context(s, "emotion_verification")["probe_emotion_matches"])
    assert set(wrong) == set(EMOTIONS)  # every emotion serves as a negative


# ----------------------------------------------------------------------------- intensity


def test_au_intensity_matches_the_au_values(library: TemplateLibrary, samples: list[Sample]) -> None:
    """Levels are stated for the AUs whose levels the AU head supports, and match their values; the other
    present AUs are named as active with no level; a question about one AU only asks about a graded one."""
    graded = packaged().head.graded_codes
    assert graded, "the default head supports the levels of some AUs"
    focused = with_graded = 0
    for sample in samples:
        ctx = context(sample, "au_intensity")
        values = {c: float(sample.au_intensity[CODES.index(c)]) for c in sample.au_present}
        focus = ctx["focus_au"]["code"] if ctx["focus_au"] else None
        focused += focus is not None
        with_graded += bool(graded & set(values))
        assert focus is None or focus in graded
        named = [focus] if focus else list(values)
        for question, answer in every_phrasing(library, "au_intensity", ctx):
            if focus:
                assert focus in question or f"action unit {focus[2:]} " in question, question
            assert set(AU_RE.findall(answer)) == set(named), (named, answer)
            for code in named:
                letter, level = grade(values[code])
                part = next(p for p in re.split(r";|, (?=AU\d)|\n|(?<=\.) ", answer) if re.search(rf"\b{code}\b", p))
                part = part.replace("A-E", "")
                letters = set(re.findall(r"\b[A-E]\b", part))
                levels = set(re.findall(r"trace|slight|marked|severe|maximum", part.lower()))
                if code in graded:
                    assert letters | levels and letters <= {letter} and levels <= {level}, (code, letter, answer)
                else:  # named as active, its level left unsaid
                    sentence = next(t for t in re.split(r"(?<=\.) ", answer) if re.search(rf"\b{code}\b", t))
                    assert not letters and not levels and "left ungraded" in sentence, (code, answer)
            if not values:
                assert "no clear action units" in answer.lower()
    assert 0.3 * with_graded <= focused <= 0.7 * with_graded  # half ask about one graded AU, half about all


# ----------------------------------------------------------------------------- FE -> AU


def test_fe_to_au_lists_expected_present_and_missing(library: TemplateLibrary, samples: list[Sample]) -> None:
    for sample in samples:
        if sample.item.emotion is None:
            continue
        core = set(PROTOTYPES.table[sample.item.emotion]["core"])
        present = set(sample.au_present)
        ctx = context(sample, "fe_to_au")
        for question, answer in every_phrasing(library, "fe_to_au", ctx):
            assert sample.item.emotion in question
            denied = {c for s in sentences(answer) if DENIAL.search(s) for c in AU_RE.findall(s)}
            affirmed = {c for s in sentences(answer) if not DENIAL.search(s) for c in AU_RE.findall(s)}
            assert denied == core - present, (answer, core, present)
            assert affirmed <= present, answer
            assert core & present <= affirmed, answer
            assert not other_emotions_named(answer, {sample.item.emotion}), answer


# ----------------------------------------------------------------------------- mixed cues


def test_mixed_cues_only_for_conflicts_and_honest(samples: list[Sample]) -> None:
    render = stage(tasks_per_face=len(ALL_TASKS))
    conflicts = 0
    for sample in samples:
        outputs = [o for o in render.run(sample) if isinstance(o, Instruction)]
        mixed = [o for o in outputs if o.task == "mixed_cues"]
        assert bool(mixed) == sample.fe_au_conflict, (sample.item.emotion, sample.au_present)
        for inst in mixed:
            conflicts += 1
            answer = inst.conversations[1]["content"]
            core = set(PROTOTYPES.table[sample.item.emotion]["core"])
            assert sample.item.emotion in answer and "only weakly support" in answer, answer
            assert not other_emotions_named(answer, {sample.item.emotion}), answer
            denied = {c for s in sentences(answer) if DENIAL.search(s) for c in AU_RE.findall(s)}
            affirmed = {c for s in sentences(answer) if not DENIAL.search(s) for c in AU_RE.findall(s)}
            assert denied <= core - set(sample.au_present) and affirmed <= set(sample.au_present), answer
    assert conflicts > 10


def test_mixed_cues_never_chosen_without_conflict() -> None:
    render = stage(mix={"mixed_cues": 1.0, "fe_recognition": 1.0}, tasks_per_face=2)
    for sample in faces(200, seed=5):
        tasks = {o.task for o in render.run(sample) if isinstance(o, Instruction)}
        assert ("mixed_cues" in tasks) == sample.fe_au_conflict


# ----------------------------------------------------------------------------- multi-turn


def test_multi_turn_conversations(samples: list[Sample]) -> None:
    render = stage(mix={"multi_turn": 1.0}, tasks_per_face=1)
    phrasings = set()
    for sample in samples:
        outputs = list(render.run(sample))
        if sample.item.emotion is None:
            assert outputs[0].reason == "no_renderable_task"
            continue
        (inst,) = outputs
        conv = inst.conversations
        check_turns(conv)
        assert len(conv) == 6
        match = re.fullmatch(r"multi_turn/(q\d+a\d+)-(q\d+a\d+)-(q\d+a\d+)@2", inst.template_id)
        assert match, inst.template_id
        phrasings.add(match.groups())
        aus_answer, emotion_answer, intensity_answer = conv[1]["content"], conv[3]["content"], conv[5]["content"]
        assert set(AU_RE.findall(aus_answer)) == set(sample.au_present)
        assert sample.item.emotion in emotion_answer.lower()
        assert not other_emotions_named(emotion_answer, {sample.item.emotion})
        if sample.fe_au_conflict:
            assert "only weakly support" in emotion_answer
        assert set(AU_RE.findall(intensity_answer)) == set(sample.au_present)
        graded = packaged().head.graded_codes
        for code in sample.au_present:  # levels for the AUs whose levels the head supports, the others ungraded
            letter, level = grade(float(sample.au_intensity[CODES.index(code)]))
            if code in graded:
                assert letter in intensity_answer or level in intensity_answer.lower()
            else:
                assert "left ungraded" in intensity_answer, intensity_answer
        assert not any(IMAGE_TOKEN in t["content"] for t in conv[1:])
    assert len({p[1] for p in phrasings}) > 1 and len({p[2] for p in phrasings}) > 1  # turns vary independently


# ----------------------------------------------------------------------------- whole stage


def test_stage_uses_every_family_and_is_deterministic(samples: list[Sample]) -> None:
    def rows(seed: int) -> list[tuple[str, str, list]]:
        render = stage(seed=seed)
        return [(o.task, o.template_id, o.conversations) for s in samples for o in render.run(s)
                if isinstance(o, Instruction)]

    first = rows(0)
    assert first == rows(0)
    assert first != rows(1)
    assert {task for task, _, _ in first} == set(ALL_TASKS)
    for _, _, conv in first:
        check_turns(conv)


# ----------------------------------------------------------------------------- template format


def write(folder: Path, data: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{data['task']}.yaml").write_text(json.dumps(data))
    return folder


SIX = [f"Q{i}?" for i in range(6)]
FOUR = [f"A{i} {{{{ emotion }}}}." for i in range(4)]


def test_turns_format_loads_and_renders(tmp_path: Path) -> None:
    lib = TemplateLibrary(write(tmp_path, {
        "task": "chat", "version": "3", "requires": ["emotion"],
        "turns": [{"questions": SIX, "answers": FOUR}, {"questions": SIX, "answers": FOUR}],
    }))
    assert lib.turn_counts("chat") == [(6, 4), (6, 4)]
    template_id, conv = lib.render_turns("chat", {"emotion": "fear"}, [(1, 2), (5, 0)])
    assert template_id == "chat/q1a2-q5a0@3"
    assert [t["content"] for t in conv] == ["<image>\nQ1?", "A2 fear.", "Q5?", "A0 fear."]
    with pytest.raises(ValueError, match="2 turn"):
        lib.render_turns("chat", {"emotion": "fear"}, [(0, 0)])


@pytest.mark.parametrize("bad, match", [
    ({"turns": [{"questions": SIX, "answers": FOUR}]}, "at least 2"),
    ({"questions": SIX, "answers": FOUR, "turns": [{"questions": SIX, "answers": FOUR}] * 2}, "exactly one"),
    ({"turns": [{"questions": SIX, "answers": FOUR}, {"questions": SIX, "answers": FOUR, "x": 1}]}, r"turns\[1\]"),
    ({"turns": [{"questions": SIX, "answers": FOUR}, {"questions": SIX[:2], "answers": FOUR}]},
     r"turns\[1\]\.questions"),
    ({"turns": [{"questions": SIX, "answers": FOUR}, {"questions": SIX, "answers": ["{{ nope }}"] * 4}]},
     r"turns\[1\]\.answers\[0\].*nope"),
    ({"requires": ["emotion", "luck"], "questions": SIX, "answers": FOUR}, "requires"),
])
def test_bad_turns_fail_at_load(tmp_path: Path, bad: dict, match: str) -> None:
    data = {"task": "chat", "version": "1", "requires": ["emotion"], **bad}
    with pytest.raises(TemplateError, match=match):
        TemplateLibrary(write(tmp_path, data))


def test_conflict_requirement_skips_example_contexts_without_conflict(tmp_path: Path) -> None:
    # would raise on a non-conflict example if the load-time check rendered it there
    answer = "{% if not conflict %}{{ undefined_on_purpose }}{% endif %}Conflict about {{ emotion }}."
    lib = TemplateLibrary(write(tmp_path, {"task": "c", "version": "1", "requires": ["emotion", "aus", "conflict"],
                                           "questions": SIX, "answers": [answer] * 4}))
    assert lib.requires("c") == ("emotion", "aus", "conflict")


def test_reference_answers_score_perfectly(samples: list[Sample]) -> None:
    """The evaluator scores the first answer: the label for multiple choice, the AUs for multi-turn."""
    from pipeline.train.data import first_answer
    from pipeline.train.score import score_answers

    render = stage(mix={"fe_multiple_choice": 1.0, "multi_turn": 1.0}, tasks_per_face=2)
    items = [{"task": o.task, "emotion": s.item.emotion, "au_present": s.au_present,
              "answer": first_answer(o.conversations)}
             for s in samples for o in render.run(s) if isinstance(o, Instruction)]
    scores = score_answers(items)
    assert scores["fe_n"] == scores["au_n"] == len(items) // 2 > 0
    assert scores["fe_accuracy"] == 1.0 and scores["au_f1"] == 1.0


# ----------------------------------------------------------------------------- the validation's verifier


def rendered_answers(library: TemplateLibrary, contexts: list[dict]):
    """(task, context, assistant text) for every phrasing of every family; multi-turn: each turn's phrasings
    with the other turns at their first phrasing, the assistant turns joined as validation reads them."""
    for task in library.tasks:
        turns = library.turn_counts(task)
        for ctx in contexts:
            if ("emotion" in library.requires(task) and ctx["emotion"] is None) or (
                    "conflict" in library.requires(task) and not ctx["conflict"]):
                continue
            for t, (n_q, n_a) in enumerate(turns):
                for q in range(n_q):
                    for a in range(n_a):
                        choices = [(0, 0)] * len(turns)
                        choices[t] = (q, a)
                        _, conv = library.render_turns(task, ctx, choices)
                        yield task, ctx, " ".join(x["content"] for x in conv if x["role"] == "assistant")


def test_every_template_text_passes_the_verifier(library: TemplateLibrary, samples: list[Sample]) -> None:
    from pipeline.grounding import verify

    contexts = [context(s, task) for s in samples[:60] for task in ("au_verification", "emotion_verification")]
    contexts += list(EXAMPLE_CONTEXTS)
    failures = []
    for task, ctx, text in rendered_answers(library, contexts):
        verdict = verify(text, ctx["emotion"], ctx["au_codes"], task)
        if not verdict.grounded:
            failures.append((task, text, verdict.reasons))
    assert not failures, f"{len(failures)} rejected, e.g. {failures[:3]}"
