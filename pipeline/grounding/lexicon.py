"""The grounding lexicon, compiled once per process and knowledge: emotion words, AU phrasings with their
pre-filters, and cues.

From the knowledge (`pipeline.knowledge`): its grounding lexicon (grounding_lexicon.json), the emotions'
"mentions", and the AU names of its vocabulary, so a build verifies with the vocabulary it renders with.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from pipeline.grounding.prefilter import literal_gate, longest_match, lower_case_twin
from pipeline.knowledge import Knowledge, packaged

# Words, numbers and single punctuation marks: how texts and lexicon phrases are split.
TOKEN_RE = re.compile(r"\d+(?:\.\d+)?|[a-z]+(?:'[a-z]+)?|[^\sa-z\d]", re.IGNORECASE)


def words(phrase: str) -> tuple[str, ...]:
    return tuple(TOKEN_RE.findall(phrase.lower()))


@dataclass(frozen=True)
class Mention:
    kind: str  # "emotion" | "au"
    values: tuple[str, ...]  # canonical emotion, or AU codes
    mode: str  # "all": every value is claimed; "any": at least one of them
    negated: bool  # a negation inside the mention itself ("brows are not lowered")


class PhraseScan(NamedTuple):  # a tuple: the scan loop unpacks it, which is faster than attributes
    """How tokens.find_mentions scans for one AU phrasing: `first`, the longest string a match needs
    ("" if none), is tested for all phrasings at once; then `rest`, more of its literal gate. `back`
    (its length less the regex's longest match; None if unbounded) bounds where a match can start;
    `twin` is the regex's lower-case twin (or None)."""

    first: str
    back: int | None
    rest: tuple[tuple[str, ...], ...]
    rx: re.Pattern
    twin: re.Pattern | None
    plain: Mention
    negated: Mention


@dataclass(frozen=True)
class Lexicon:
    emotion_re: re.Pattern
    emotion_re_lower: re.Pattern | None  # lower_case_twin(emotion_re), alternatives grouped
    emotion_of: dict[str, str]
    emotion_mention: dict[str, Mention]  # emotion_of, as mentions (immutable: shared)
    au_phrases: tuple[tuple[re.Pattern, tuple[str, ...], str], ...]
    au_phrase_firsts: tuple[str, ...]  # PhraseScan.first of each phrase, for the all-at-once test
    au_phrase_scan: tuple[PhraseScan, ...]
    cues: dict[tuple[str, ...], frozenset[str]]
    cue_lengths: dict[str, tuple[int, ...]]  # first word -> lengths of the cues it starts, longest first
    negation_words: frozenset[str]
    tasks_stating_emotion: frozenset[str]
    key: str  # the knowledge's fingerprint: which lexicon a cached reading was made with


_COMPILED: dict[str, Lexicon] = {}  # by knowledge fingerprint: the regexes are compiled once per process


def lexicon_of(knowledge: Knowledge | None = None) -> Lexicon:
    """The compiled lexicon of `knowledge` (the packaged knowledge by default)."""
    knowledge = knowledge or packaged()
    lex = _COMPILED.get(knowledge.fingerprint)
    if lex is None:
        lex = _COMPILED[knowledge.fingerprint] = compile_lexicon(
            knowledge.lexicon, knowledge.au_vocabulary, knowledge.emotions.mentions, knowledge.fingerprint)
    return lex


def compiled_lexicon(key: str) -> Lexicon:
    """A lexicon `lexicon_of` compiled in this process, by its key."""
    return _COMPILED[key]


def compile_lexicon(data: dict[str, Any], vocabulary: Sequence[Mapping[str, Any]],
                    mentions: Mapping[str, list[str]], key: str = "") -> Lexicon:
    emotion_of = {word.lower(): emotion for emotion, spellings in mentions.items() for word in spellings}
    emotion_re = re.compile(
        r"\b(" + "|".join(re.escape(w).replace(r"\ ", r"\s+") for w in sorted(emotion_of, key=len, reverse=True))
        + r")\b",
        re.IGNORECASE,
    )
    modifiers = sorted(data["modifiers"], key=len, reverse=True)
    mod = r"(?:(?:" + "|".join(re.escape(m).replace(r"\ ", " ") for m in modifiers) + r") ){0,3}"
    phrases: list[tuple[re.Pattern, tuple[str, ...], str]] = []
    for row in vocabulary:
        # The FACS name itself, its plural, and hyphenated spellings ("lip-corner puller").
        name = re.escape(row["name"]).replace(r"\ ", "[- ]")
        phrases.append((re.compile(rf"\b{name}s?\b", re.IGNORECASE), (row["code"],), "all"))
    for entry in data["au_phrases"]:
        for pattern in entry["patterns"]:
            rx = re.compile(r"\b(?:" + pattern.replace("{mod}", mod) + r")\b", re.IGNORECASE)
            phrases.append((rx, tuple(entry["aus"]), entry.get("mode", "all")))
    cues: dict[tuple[str, ...], set[str]] = {}
    for category, entries in data["cues"].items():
        for phrase in entries:
            cues.setdefault(words(phrase), set()).add(category)
    negation_words = frozenset(
        w for p in data["cues"]["negation_clause"] + ["no longer"] for w in words(p)
    )
    scan = tuple(phrase_scan(rx, aus, mode) for rx, aus, mode in phrases)
    return Lexicon(
        emotion_re=emotion_re,
        emotion_re_lower=_grouped_twin(emotion_re, emotion_of),
        emotion_of=emotion_of,
        emotion_mention={w: Mention("emotion", (e,), "all", False) for w, e in emotion_of.items()},
        au_phrases=tuple(phrases),
        au_phrase_firsts=tuple(s.first for s in scan),
        au_phrase_scan=scan,
        cues={k: frozenset(v) for k, v in cues.items()},
        cue_lengths={w: tuple(sorted({len(k) for k in cues if k and k[0] == w}, reverse=True))
                     for w in {k[0] for k in cues if k}},
        negation_words=negation_words,
        tasks_stating_emotion=frozenset(data["tasks_stating_emotion"]),
        key=key,
    )


def phrase_scan(rx: re.Pattern, aus: tuple[str, ...], mode: str) -> PhraseScan:
    """How to scan for the AU phrasing rx (see PhraseScan)."""
    gate = literal_gate(rx, keep=None)
    # Tested first, for all entries at once: the longest string needed on its own.
    first = max((g[0] for g in gate if len(g) == 1), key=len, default="")
    width = longest_match(rx)
    return PhraseScan(
        first=first,
        back=None if width is None else len(first) - width,
        rest=tuple(g for g in gate if g != (first,))[:2],
        rx=rx,
        twin=lower_case_twin(rx),
        plain=Mention("au", aus, mode, False),
        negated=Mention("au", aus, mode, True),
    )


def _grouped_twin(emotion_re: re.Pattern, emotion_of: dict[str, str]) -> re.Pattern | None:
    twin = lower_case_twin(emotion_re)
    if twin is None or not all(w[:1].isascii() and w[:1].isalnum() for w in emotion_of):
        return twin
    # The same alternatives grouped by first letter, in order: at a position only the group of its
    # letter can match, so the matches are the same, and far fewer alternatives are tried.
    groups: dict[str, list[str]] = {}
    for w in sorted(emotion_of, key=len, reverse=True):
        groups.setdefault(w[0], []).append(re.escape(w[1:]).replace(r"\ ", r"\s+"))
    return re.compile(
        r"\b(" + "|".join(f"{c}(?:{'|'.join(rest)})" for c, rest in groups.items()) + r")\b", twin.flags
    )


def tasks_stating_emotion(knowledge: Knowledge | None = None) -> frozenset[str]:
    """Tasks whose answer must affirm the labelled emotion (the grounding lexicon's `tasks_stating_emotion`)."""
    return lexicon_of(knowledge).tasks_stating_emotion
