"""Grounding: what a text claims about emotions and AUs, and where it disagrees with the labels.

Used on every row at validation (template output is checked like any other text). Mentions are
found by word: the emotion words of schemas/emotions.json "mentions", AU codes written as "AU12"
or "AU 12".
"""

from __future__ import annotations

import re
from functools import cache

from pipeline.sources.labels import canonical_emotions, emotion_mentions

AU_MENTION = re.compile(r"\bAU\s?(\d{1,2})\b", re.IGNORECASE)


@cache
def _emotion_patterns() -> dict[str, re.Pattern]:
    table = emotion_mentions()
    return {
        emotion: re.compile(r"\b(" + "|".join(map(re.escape, table[emotion])) + r")\b", re.IGNORECASE)
        for emotion in canonical_emotions()
    }


def mentioned_emotions(text: str) -> set[str]:
    return {emotion for emotion, pattern in _emotion_patterns().items() if pattern.search(text)}


def mentioned_aus(text: str) -> set[str]:
    return {f"AU{int(n)}" for n in AU_MENTION.findall(text)}


def disagreements(answer: str, emotion: str | None, au_present: list[str], task: str) -> list[str]:
    """Reasons the answer text disagrees with the labels; empty when it is grounded."""
    problems = []
    unknown_aus = mentioned_aus(answer) - set(au_present)
    if unknown_aus:
        problems.append(f"mentions absent AU(s) {sorted(unknown_aus)}")
    other = mentioned_emotions(answer) - ({emotion} if emotion else set())
    if other:
        problems.append(f"names emotion(s) {sorted(other)} but the label is {emotion}")
    if task == "fe_recognition" and emotion and emotion not in mentioned_emotions(answer):
        problems.append(f"does not name the label {emotion}")
    return problems
