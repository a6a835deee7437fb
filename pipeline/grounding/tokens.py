"""Text -> tokens: contractions normalised, mentions of emotions and AUs found, the words between
them matched against the lexicon's cues."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from itertools import compress

from pipeline.grounding.lexicon import TOKEN_RE, Lexicon, Mention, words
from pipeline.grounding.prefilter import folded, gate_holds, literal_gate

# An AU code and any list of numbers continuing it: "AU 1, 2 and 5", "AUs 6/12", "AU6+AU12".
_AU_PREFIX = r"(?:\bA\.?U\.?s?|\baction\s+units?)\s*[-#]?\s*"
_AU_NUMBER = r"(\d{1,2})(?!\d)[A-E]?(?![\d.,]\d)(?![A-Za-z])"
AU_CODE_RE = re.compile(
    _AU_PREFIX + _AU_NUMBER
    + r"(?P<more>(?:\s*(?:,\s*(?:and|or)\b|,|\+|/|&|\band\b|\bor\b|\bnor\b)\s*(?:" + _AU_PREFIX + r")?"
    + r"\d{1,2}(?!\d)[A-E]?(?![\d.,]\d)(?![A-Za-z])(?!\s*(?:of|out\s+of|on\s+the|/)\b))*)",
    re.IGNORECASE,
)
NUMBER_RE = re.compile(r"\d{1,2}")
_LINE_TOKEN_RE = re.compile(r"\n|" + TOKEN_RE.pattern, re.IGNORECASE)  # TOKEN_RE, and line breaks
DROPPED = {"(", ")", "[", "]", '"', "'", "*", "`", "“", "”"}
NORMALISE = [
    (re.compile(r"[’‘`]"), "'"),
    (re.compile(r"[“”]"), '"'),
    (re.compile(r"\b(e\.g|i\.e|vs|approx|cf|etc)\.", re.IGNORECASE), r"\1"),
    (re.compile(r"\bcan'?t\b|\bcannot\b", re.IGNORECASE), "can not"),
    (re.compile(r"\bwon't\b", re.IGNORECASE), "will not"),
    (re.compile(r"\b(\w+)n't\b", re.IGNORECASE), r"\1 not"),
    (re.compile(r"\b(it|she|he|that|there|what|this|here)'s\b", re.IGNORECASE), r"\1 is"),
    (re.compile(r"\b(i)'m\b", re.IGNORECASE), r"\1 am"),
    (re.compile(r"\b(they|we|you)'re\b", re.IGNORECASE), r"\1 are"),
]
_NORMALISE_GATES = [literal_gate(rx) for rx, _ in NORMALISE]


@dataclass(slots=True)
class Token:
    text: str  # lower-case word(s) or punctuation; "" for a mention
    cats: frozenset[str] = frozenset()
    mention: Mention | None = None


_MENTION_CATS = frozenset({"mention"})


def tokenise(text: str, lex: Lexicon) -> list[Token]:
    low = folded(text)
    for (rx, repl), gate in zip(NORMALISE, _NORMALISE_GATES, strict=True):
        if gate_holds(gate, low):  # else rx cannot match: the sub would change nothing
            replaced = rx.sub(repl, text)
            if replaced != text:
                text, low = replaced, folded(replaced)
    tokens: list[Token] = []
    pos = 0
    for start, end, mention in [*find_mentions(text, lex), (len(text), len(text), None)]:
        tokens.extend(_cue_tokens(_plain_words(text[pos:start]), lex))
        if mention is not None:
            tokens.append(Token("", _MENTION_CATS, mention))
        pos = end
    return tokens


def find_mentions(text: str, lex: Lexicon) -> list[tuple[int, int, Mention]]:
    """(start, end, mention) of the emotion and AU mentions in text, in order, none overlapping."""
    found: list[tuple[int, int, Mention]] = []
    for m in AU_CODE_RE.finditer(text):
        found.append((m.start(), m.end(), _au_code_mention(m.group(1), m.group("more"))))
    low = folded(text)
    ascii_text = text.isascii()  # then low is text.lower(), position for position
    # compress: the entries whose first needed string occurs (the test runs in C, no Python loop).
    scan = compress(lex.au_phrase_scan, map(low.__contains__, lex.au_phrase_firsts))
    for first, back, rest, rx, twin, plain, negated in scan:
        if rest and not gate_holds(rest, low):
            continue  # rx cannot match
        if ascii_text and twin:
            # A match holds `first` and is at most len(first) - back long: none starts before `start`.
            start = low.find(first) + back if back is not None else 0
            matches = twin.finditer(low, start if start > 0 else 0)
        else:
            matches = rx.finditer(text)
        for m in matches:
            mention = negated if any(w in lex.negation_words for w in words(m.group(0))) else plain
            found.append((m.start(), m.end(), mention))
    emotion_lower = lex.emotion_re_lower
    for m in emotion_lower.finditer(low) if ascii_text and emotion_lower else lex.emotion_re.finditer(text):
        found.append((m.start(), m.end(), lex.emotion_mention[" ".join(m.group(0).lower().split())]))
    # Longest first, then leftmost; drop mentions overlapping a kept one.
    found.sort(key=lambda f: (-(f[1] - f[0]), f[0]))
    kept: list[tuple[int, int, Mention]] = []
    for found_one in found:
        start, end, _ = found_one
        for s, e, _ in kept:
            if end > s and start < e:
                break
        else:
            kept.append(found_one)
    return sorted(kept, key=lambda f: f[0])


@lru_cache(maxsize=1024)
def _au_code_mention(number: str, more: str | None) -> Mention:
    numbers = [number, *NUMBER_RE.findall(more or "")]
    codes = tuple(dict.fromkeys(f"AU{int(n)}" for n in numbers))
    return Mention("au", codes, "all", False)


def _plain_words(chunk: str) -> list[str]:
    # Tokens never contain "\n", so one scan finds the tokens of each line and the line breaks between.
    return [w.lower() for w in _LINE_TOKEN_RE.findall(chunk) if w not in DROPPED]


def _cue_tokens(chunk_words: list[str], lex: Lexicon) -> list[Token]:
    tokens: list[Token] = []
    i = 0
    while i < len(chunk_words):
        # Longest cue first; only the lengths of cues starting with this word can match.
        for n in lex.cue_lengths.get(chunk_words[i], ()):
            cats = lex.cues.get(tuple(chunk_words[i : i + n])) if n <= len(chunk_words) - i else None
            if cats:
                tokens.append(Token(" ".join(chunk_words[i : i + n]), cats))
                i += n
                break
        else:
            tokens.append(Token(chunk_words[i]))
            i += 1
    return tokens
