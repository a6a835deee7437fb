"""What a template sees for one face: the context builder, and the example contexts that every
template is rendered against when the library loads. Both read the AU vocabulary, the emotions and the
prototypes of a `pipeline.knowledge.Knowledge`."""

from __future__ import annotations

from typing import Any

from pipeline.domain.record import Sample, SourceItem
from pipeline.knowledge import Knowledge, packaged
from pipeline.templating import question_subjects

# Level words for intensity bins 1..5 of the 0-5 AU scale (FACS A..E).
LEVELS = ("trace", "slight", "marked", "severe", "maximum")
GRADES = ("A", "B", "C", "D", "E")  # the FACS intensity letters of the same bins


def _bin(value: float) -> int:
    return min(5, max(1, int(value + 0.5)))


def intensity_level(value: float) -> str:
    """0-5 intensity -> level word of its bin 1..5 (rounded, clamped: below 1.5 is 'trace')."""
    return LEVELS[_bin(value) - 1]


def intensity_grade(value: float) -> str:
    """0-5 intensity -> FACS intensity letter A..E of the same bin as `intensity_level`."""
    return GRADES[_bin(value) - 1]


def _au_entry(vocab_row: dict[str, Any], intensity: float, graded: bool) -> dict[str, Any]:
    return {
        "code": vocab_row["code"],
        "number": vocab_row["number"],
        "name": vocab_row["name"],
        "region": vocab_row["region"],
        "muscle": vocab_row["muscle"],
        "intensity": round(float(intensity), 1),
        "level": intensity_level(float(intensity)),
        "grade": intensity_grade(float(intensity)),
        "graded": graded,  # the AU head supports this AU's levels: an intensity answer may state them
    }


def build_context(sample: Sample, knowledge: Knowledge, key: str = "") -> dict[str, Any]:
    """The variables a template sees for one face (`key`, e.g. "seed|face_id|task", seeds the probes), in the
    vocabulary, emotions and prototypes of `knowledge`.

    emotion, emotion_adj ("angry"); aus: present AUs, strongest first, each {code, number, name,
    region, muscle, intensity (0-5), level (word), grade (FACS A-E), graded}; graded_aus / ungraded_aus:
    the present AUs whose levels the AU head supports (`AUHead.graded_codes`) and the others; au_codes;
    evidence_aus: those of `sample.evidence_aus` that are present (an answer never names an AU that was not
    observed);
    consistency, conflict (`sample.fe_au_conflict`).
    Expectation (from the prototypes, empty for an unlabelled face): expected_aus, the core AUs of the
    label; expected_present / expected_missing, those observed / not observed; extra_aus, present
    AUs outside the core, each with `supporting` (a co-occurring AU of the label).
    Probes (picked by `pipeline.templating.question_subjects` from `key`): mc_options [{letter, emotion}] and mc_answer
    (the label's letter); probe_au (an AU entry with `present`) and probe_au_present; probe_emotion,
    probe_emotion_adj and probe_emotion_matches (None for an unlabelled face); focus_au, the present graded
    AU an intensity question asks about (None: ask about all of them).
    """
    emotions = list(knowledge.emotions.canonical)
    choice = question_subjects.pick(sample.item.emotion, list(dict.fromkeys(sample.au_present)), knowledge.codes,
                                    emotions, key, graded=sorted(knowledge.head.graded_codes))
    return _context(sample, knowledge, choice)


def _context(sample: Sample, knowledge: Knowledge, choice: question_subjects.Probes) -> dict[str, Any]:
    vocabulary, prototypes = knowledge.au_vocabulary, knowledge.prototypes.table
    index = {row["code"]: i for i, row in enumerate(vocabulary)}
    graded = knowledge.head.graded_codes
    intensity = sample.au_intensity
    if intensity is not None and len(intensity) != len(vocabulary):
        raise ValueError(f"au_intensity has {len(intensity)} values, vocabulary has {len(vocabulary)}")

    def entry(code: str) -> dict[str, Any]:
        if code not in index:
            raise ValueError(f"AU {code!r} is not in the AU vocabulary")
        i = index[code]
        return _au_entry(vocabulary[i], float(intensity[i]) if intensity is not None else 0.0, code in graded)

    aus = [entry(code) for code in dict.fromkeys(sample.au_present)]
    aus.sort(key=lambda au: (-au["intensity"], au["number"]))
    by_code = {au["code"]: au for au in aus}
    evidence = [by_code[c] for c in dict.fromkeys(sample.evidence_aus) if c in by_code]
    consistency = sample.fe_au_consistency
    emotion = sample.item.emotion
    adjectives = knowledge.emotions.adjectives

    if emotion is not None and emotion not in prototypes:
        raise ValueError(f"emotion {emotion!r} has no prototype AUs")
    proto = prototypes[emotion] if emotion is not None else {"core": [], "supporting": []}
    core, supporting = list(proto["core"]), set(proto["supporting"])
    expected = [by_code.get(code) or entry(code) for code in core]
    extra = [{**au, "supporting": au["code"] in supporting} for au in aus if au["code"] not in core]

    probe_au = {**(by_code.get(choice.probe_au) or entry(choice.probe_au)), "present": choice.probe_au in by_code}
    if choice.focus_au is not None and (choice.focus_au not in by_code or choice.focus_au not in graded):
        raise ValueError(f"focus AU {choice.focus_au} is not present, or its levels are not supported")
    if emotion is not None and emotion not in choice.mc_options:
        raise ValueError(f"the options {choice.mc_options} do not contain the label {emotion!r}")
    options = [{"letter": question_subjects.LETTERS[i], "emotion": e} for i, e in enumerate(choice.mc_options)]
    probe_emotion = choice.probe_emotion
    return {
        "emotion": emotion,
        "emotion_adj": adjectives[emotion] if emotion else None,
        "aus": aus,
        "au_codes": [au["code"] for au in aus],
        "graded_aus": [au for au in aus if au["graded"]],
        "ungraded_aus": [au for au in aus if not au["graded"]],
        "evidence_aus": evidence,
        "consistency": round(float(consistency), 2) if consistency is not None else None,
        "conflict": bool(sample.fe_au_conflict),
        "expected_aus": expected,
        "expected_present": [au for au in expected if au["code"] in by_code],
        "expected_missing": [au for au in expected if au["code"] not in by_code],
        "extra_aus": extra,
        "mc_options": options,
        "mc_answer": next((o["letter"] for o in options if o["emotion"] == emotion), None),
        "probe_au": probe_au,
        "probe_au_present": probe_au["present"],
        "probe_emotion": probe_emotion,
        "probe_emotion_adj": adjectives[probe_emotion] if probe_emotion else None,
        "probe_emotion_matches": probe_emotion == emotion if probe_emotion else None,
        "focus_au": by_code[choice.focus_au] if choice.focus_au else None,
    }


_EXAMPLES: dict[str, tuple[dict[str, Any], ...]] = {}  # by knowledge fingerprint


def example_contexts(knowledge: Knowledge | None = None) -> tuple[dict[str, Any], ...]:
    """Load-time check contexts: every branch a template can reasonably take.

    Built with the vocabulary and prototypes of `knowledge` (the packaged one by default) through the same
    code as real faces; each face twice, once with "yes" probes (the label is option A, the probed AU is
    present, an intensity question about one AU) and once with "no" probes (the label is option D, an absent
    AU, another emotion, all AUs). AUs a vocabulary lacks are left out of the example faces.
    """
    knowledge = knowledge or packaged()
    if knowledge.fingerprint not in _EXAMPLES:
        _EXAMPLES[knowledge.fingerprint] = _example_contexts(knowledge)
    return _EXAMPLES[knowledge.fingerprint]


def _example_contexts(knowledge: Knowledge) -> tuple[dict[str, Any], ...]:
    codes = knowledge.codes
    emotions = list(knowledge.emotions.canonical)
    faces: list[tuple[str | None, dict[str, float], list[str], float | None, bool]] = [
        ("happiness", {"AU12": 4.1, "AU6": 3.2, "AU25": 1.2}, ["AU12", "AU6"], 1.0, False),
        ("sadness", {"AU4": 2.4}, ["AU4"], 0.33, True),
        ("anger", {"AU12": 4.1, "AU25": 1.2}, [], 0.0, True),
        ("fear", {}, [], 0.0, True),
        ("neutral", {}, [], 1.0, False),
        ("neutral", {"AU12": 4.1, "AU6": 3.2, "AU4": 2.4, "AU1": 1.9}, [], 0.0, True),
        ("surprise", {"AU1": 1.9, "AU2": 2.6, "AU5": 5.0, "AU26": 3.0}, ["AU1", "AU2", "AU5", "AU26"], 1.0, False),
        (None, {"AU4": 2.4, "AU1": 1.9}, [], None, False),
        (None, {}, [], None, False),
    ]
    contexts = []
    for n, (emotion, present, evidence, consistency, conflict) in enumerate(faces):
        present = {code: value for code, value in present.items() if code in codes}
        evidence = [code for code in evidence if code in present]
        vector = [present.get(code, 0.0) for code in codes]
        item = SourceItem("example", f"example{n}", f"example{n}", emotion=emotion)
        sample = Sample(item, au_intensity=vector, au_present=list(present), evidence_aus=evidence,
                        fe_au_consistency=consistency, fe_au_conflict=conflict)
        others = [e for e in emotions if e != emotion]
        absent = next(code for code in codes if code not in present)
        strongest = max(present, key=present.get) if present else None
        gradable = [code for code in present if code in knowledge.head.graded_codes]
        focus = max(gradable, key=present.get) if gradable else None
        yes = question_subjects.Probes((emotion, *others[:3]) if emotion else (), strongest or absent, emotion, focus)
        no = question_subjects.Probes((*others[:3], emotion) if emotion else (), absent,
                                      others[0] if emotion else None, None)
        contexts += [_context(sample, knowledge, yes), _context(sample, knowledge, no)]
    return tuple(contexts)


EXAMPLE_CONTEXTS: tuple[dict[str, Any], ...] = example_contexts()  # of the packaged knowledge
