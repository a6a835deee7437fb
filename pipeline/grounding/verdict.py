"""Verdicts: whether the claims of a text agree with a face's labels."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from pipeline.grounding.claims import Claims, extract_claims
from pipeline.grounding.lexicon import tasks_stating_emotion
from pipeline.knowledge import Knowledge, packaged


@dataclass(frozen=True)
class Verdict:
    """grounded: no claim contradicts the labels; reasons: one short sentence per contradiction."""

    grounded: bool
    reasons: tuple[str, ...]
    claims: Claims


def _au_label(key: str, names: dict[str, str]) -> str:
    return " or ".join(f"{c} ({names[c]})" if c in names else c for c in key.split("|"))


def verify(
    text: str,
    emotion: str | None,
    au_present: Iterable[str],
    task: str | None = None,
    knowledge: Knowledge | None = None,
    must_state_emotion: bool | None = None,
) -> Verdict:
    """Check the claims of `text` against a face's labels.

    Ungrounded when the text affirms (or hedges) an AU that is not in `au_present`, denies one
    that is, affirms an emotion other than the label, denies the label, hedges another emotion
    without affirming the label, or, for a task that must state the emotion
    (`tasks_stating_emotion()`, or `must_state_emotion`), does not affirm the label. With no label
    (`emotion` None) only AU claims are checked, except that such a task may not name an emotion.
    `knowledge` (default: the packaged one) gives the lexicon the text is read with, the AU names used
    in reasons, the AUs that are measured and the canonical emotions: a build passes its own.
    """
    knowledge = knowledge or packaged()
    claims = extract_claims(text, knowledge)
    names = knowledge.au_names
    present = set(au_present)
    reasons: list[str] = []

    def order(key: str) -> tuple[int, ...]:
        return tuple(int(c[2:]) if c[2:].isdigit() else 0 for c in key.split("|"))

    for key in sorted(claims.affirmed_aus | claims.hedged_aus, key=order):
        codes = key.split("|")
        if any(c in present for c in codes):
            continue
        verb = "affirms" if key in claims.affirmed_aus else "hedges"
        if all(c not in names for c in codes):
            reasons.append(f"{verb} {key}, which is not a measured AU")
        else:
            reasons.append(f"{verb} absent {_au_label(key, names)}")
    for key in sorted(claims.denied_aus, key=order):
        for code in key.split("|"):
            if code in present:
                reasons.append(f"denies present {_au_label(code, names)}")
    must = must_state_emotion if must_state_emotion is not None else task in tasks_stating_emotion(knowledge)
    if emotion is None and must and (claims.affirmed_emotions or claims.hedged_emotions):
        names_ = sorted(claims.affirmed_emotions | claims.hedged_emotions)
        reasons.append(f"states {', '.join(names_)} but the face has no emotion label")
    if emotion is not None:
        if emotion not in knowledge.emotions.canonical:
            reasons.append(f"label {emotion!r} is not a canonical emotion")
        for other in sorted(claims.affirmed_emotions - {emotion}):
            reasons.append(f"affirms {other} but the label is {emotion}")
        if emotion in claims.denied_emotions:
            reasons.append(f"denies the label {emotion}")
        if emotion not in claims.affirmed_emotions:
            for other in sorted(claims.hedged_emotions - {emotion}):
                reasons.append(f"hedges {other} without affirming the label {emotion}")
            if must:
                reasons.append(f"does not state the label {emotion}")
    return Verdict(not reasons, tuple(reasons), claims)


def disagreements(answer: str, emotion: str | None, au_present: Iterable[str], task: str | None,
                  knowledge: Knowledge | None = None) -> list[str]:
    """Reasons `answer` disagrees with the labels; empty when it is grounded (`verify(...).reasons`)."""
    return list(verify(answer, emotion, au_present, task, knowledge).reasons)
