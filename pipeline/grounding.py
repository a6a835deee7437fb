"""Grounding: what a text claims about a face's emotion and action units (AUs), and whether those
claims agree with the face's labels.

Used on every template output and every LLM-written text. The public API:

    claims = extract_claims("No, AU4 (brow lowerer) is not active; the smile (AU12) shows happiness.")
    claims.denied_aus == {"AU4"}; claims.affirmed_aus == {"AU12"}; claims.affirmed_emotions == {"happiness"}
    verdict = verify(text, emotion="happiness", au_present=["AU6", "AU12"], task="fe_recognition")
    verdict.grounded, verdict.reasons        # False, ("affirms absent AU4 (brow lowerer)",) ...

How a text is read (rule-based, no model; knowledge in schemas/grounding_lexicon.json and
schemas/emotions.json "mentions", AU names from schemas/au_vocabulary.csv):

* Mentions: emotion words and synonyms; AU codes ("AU12", "AU 12", "AU-12", "action unit 12",
  "AUs 6 and 12", "AU6+AU12", "AU 1, 2 and 5"); FACS names ("lip corner puller") and common
  phrasings ("raised cheeks", "brows are lowered", "smile"). A phrasing that fits several AUs
  ("raised brows": AU1 or AU2) is recorded as "AU1|AU2", meaning at least one of them.
* Sentences split at . ! ? ; : and line breaks; a sentence is split into clauses at commas (not
  inside a list of mentions), at words like "but", "while", "with", and at "and"/"or" joining two
  clauses that each have a verb.
* Negation: "not"/"never"/"no"/"none"/"neither ... nor"/"rules out" deny the mentions after them
  in the clause; "not" followed by a presence word ("AU4 is not present", "does not appear"), and
  "not" right after a copula for emotions ("Anger is not the answer"), deny the clause's subject
  too; "without", "no sign of", "lacks", "rather than", "instead of" deny only the noun phrase
  that follows; "absent", "missing", "ruled out" deny what follows them or, if nothing does, the
  clause's subject. A negation inside an AU phrasing ("brows are not lowered") denies it.
  Pseudo-negations ("no doubt", "not only", "nothing but", "not surprisingly") negate nothing.

Policy for mentions that are not assertions (chosen to keep the dataset safe):

* In a question (sentence ending in "?"): ignored; a question asserts nothing.
* In a generic or conditional statement ("typically", "usually", "is associated with", "a marker
  of", "prototypical of", "if", "unless"): ignored; knowledge about emotions in general ("a happy face typically shows
  AU6 and AU12") is not a claim about this face, even when negated ("none of these is a typical
  marker of sadness").
* Hedged ("might", "could be mistaken for", "possibly", "whether", "little evidence for"):
  recorded as hedged, neither affirmed nor denied. `verify` treats a hedge as a weak claim: a
  hedged AU that is not present is ungrounded; a hedged emotion other than the label is ungrounded
  unless the text also affirms the label (an honest "could be mistaken for fear, but it is
  happiness" is fine, a bare "she might be afraid" is not); a hedged label does not count as
  stating it. Negation wins over a hedge ("might not be angry" denies anger).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache, lru_cache
from itertools import compress
from pathlib import Path
from re import _parser as _sre_parse

from pipeline.config import PROJECT_ROOT
from pipeline.sources.labels import canonical_emotions, emotion_mentions
from pipeline.vocabulary import load_au_vocabulary

LEXICON_FILE = PROJECT_ROOT / "schemas" / "grounding_lexicon.json"
AU_VOCABULARY_FILE = PROJECT_ROOT / "schemas" / "au_vocabulary.csv"

__all__ = ["Claims", "Verdict", "extract_claims", "verify", "disagreements", "tasks_stating_emotion"]


@dataclass(frozen=True)
class Claims:
    """What a text asserts about the face.

    Emotions are canonical names (happiness, ...); AUs are codes ("AU12"), or "AU1|AU2" for a
    phrasing that means at least one of several AUs. Hedged mentions are neither affirmed nor denied.
    """

    affirmed_emotions: frozenset[str] = frozenset()
    denied_emotions: frozenset[str] = frozenset()
    affirmed_aus: frozenset[str] = frozenset()
    denied_aus: frozenset[str] = frozenset()
    hedged_emotions: frozenset[str] = frozenset()
    hedged_aus: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Verdict:
    """grounded: no claim contradicts the labels; reasons: one short sentence per contradiction."""

    grounded: bool
    reasons: tuple[str, ...]
    claims: Claims


# ----------------------------------------------------------------------------- lexicon


@dataclass(frozen=True)
class _Mention:
    kind: str  # "emotion" | "au"
    values: tuple[str, ...]  # canonical emotion, or AU codes
    mode: str  # "all": every value is claimed; "any": at least one of them
    negated: bool  # a negation inside the mention itself ("brows are not lowered")


@dataclass(frozen=True)
class _Lexicon:
    emotion_re: re.Pattern
    emotion_re_lower: re.Pattern | None  # _lower_case_twin(emotion_re), alternatives grouped
    emotion_of: dict[str, str]
    emotion_mention: dict[str, _Mention]  # emotion_of, as mentions (immutable: shared)
    au_phrases: tuple[tuple[re.Pattern, tuple[str, ...], str], ...]
    # For _find_mentions, per au_phrases entry: a string its match needs ("" if none); and that
    # string, its length less the regex's longest match, the rest of its _literal_gate, the regex,
    # its _lower_case_twin, and its mention, plain and negated.
    au_phrase_firsts: tuple[str, ...]
    au_phrase_scan: tuple[tuple[str, int, tuple[tuple[str, ...], ...], re.Pattern, re.Pattern | None,
                                _Mention, _Mention], ...]
    cues: dict[tuple[str, ...], frozenset[str]]
    cue_lengths: dict[str, tuple[int, ...]]  # first word -> lengths of the cues it starts, longest first
    negation_words: frozenset[str]
    tasks_stating_emotion: frozenset[str]


def _words(phrase: str) -> tuple[str, ...]:
    return tuple(_TOKEN_RE.findall(phrase.lower()))


@cache
def _lexicon(lexicon_path: str = str(LEXICON_FILE), vocabulary_path: str = str(AU_VOCABULARY_FILE)) -> _Lexicon:
    data = json.loads(Path(lexicon_path).read_text())
    emotion_of = {word.lower(): emotion for emotion, words in emotion_mentions().items() for word in words}
    emotion_re = re.compile(
        r"\b(" + "|".join(re.escape(w).replace(r"\ ", r"\s+") for w in sorted(emotion_of, key=len, reverse=True))
        + r")\b",
        re.IGNORECASE,
    )
    modifiers = sorted(data["modifiers"], key=len, reverse=True)
    mod = r"(?:(?:" + "|".join(re.escape(m).replace(r"\ ", " ") for m in modifiers) + r") ){0,3}"
    phrases: list[tuple[re.Pattern, tuple[str, ...], str]] = []
    for row in load_au_vocabulary(vocabulary_path):
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
            cues.setdefault(_words(phrase), set()).add(category)
    negation_words = frozenset(
        w for p in data["cues"]["negation_clause"] + ["no longer"] for w in _words(p)
    )
    firsts, scan = [], []
    for rx, aus, mode in phrases:
        gate = _literal_gate(rx, keep=None)
        # Tested first, for all entries at once: the longest string needed on its own.
        first = max((g[0] for g in gate if len(g) == 1), key=len, default="")
        rest = tuple(g for g in gate if g != (first,))[:2]
        firsts.append(first)
        back = len(first) - _sre_parse.parse(rx.pattern, rx.flags).getwidth()[1]
        scan.append((first, back, rest, rx, _lower_case_twin(rx),
                     _Mention("au", aus, mode, False), _Mention("au", aus, mode, True)))
    emotion_re_lower = _lower_case_twin(emotion_re)
    if emotion_re_lower and all(w[:1].isascii() and w[:1].isalnum() for w in emotion_of):
        # The same alternatives grouped by first letter, in order: at a position only the group of
        # its letter can match, so the matches are the same, and far fewer alternatives are tried.
        groups: dict[str, list[str]] = {}
        for w in sorted(emotion_of, key=len, reverse=True):
            groups.setdefault(w[0], []).append(re.escape(w[1:]).replace(r"\ ", r"\s+"))
        emotion_re_lower = re.compile(
            r"\b(" + "|".join(f"{c}(?:{'|'.join(rest)})" for c, rest in groups.items()) + r")\b",
            emotion_re_lower.flags,
        )
    return _Lexicon(
        emotion_re=emotion_re,
        emotion_re_lower=emotion_re_lower,
        emotion_of=emotion_of,
        emotion_mention={w: _Mention("emotion", (e,), "all", False) for w, e in emotion_of.items()},
        au_phrases=tuple(phrases),
        au_phrase_firsts=tuple(firsts),
        au_phrase_scan=tuple(scan),
        cues={k: frozenset(v) for k, v in cues.items()},
        cue_lengths={w: tuple(sorted({len(k) for k in cues if k and k[0] == w}, reverse=True))
                     for w in {k[0] for k in cues if k}},
        negation_words=negation_words,
        tasks_stating_emotion=frozenset(data["tasks_stating_emotion"]),
    )


def tasks_stating_emotion() -> frozenset[str]:
    """Tasks whose answer must affirm the labelled emotion (schemas/grounding_lexicon.json)."""
    return _lexicon().tasks_stating_emotion


# ----------------------------------------------------------------------------- regex pre-filter
#
# Most AU-phrase regexes cannot match most texts, and a substring test is much cheaper than a regex
# scan. _literal_gate derives from a regex a necessary condition for a match: groups of strings, one
# of each group occurring in _folded(text). A regex whose gate fails is skipped; one whose gate holds
# runs as before, so the mentions found are the same.

# Non-ASCII characters that a regex literal ASCII character matches under re.IGNORECASE (found by
# trying every code point; tests/test_grounding_speed.py checks it), and the ASCII they stand for.
_FOLD = str.maketrans({"\u0130": "i", "\u0131": "i", "\u017f": "s", "\u212a": "k"})


def _folded(text: str) -> str:
    """text lower-cased, where each character a literal ASCII pattern character can match (in any
    case) becomes that ASCII character in lower case, so a run of literals matched is a substring."""
    return text.lower() if text.isascii() else text.translate(_FOLD).lower()


def _required(items: Iterable) -> list[frozenset[str]]:
    """Groups of strings, one of each occurring in _folded(text) whenever `items` (a parsed regex
    sequence) matches somewhere in text. Conservative: what it does not understand requires nothing."""
    groups: list[frozenset[str]] = []
    run: list[str] = []  # consecutive literal characters: their match is a contiguous substring

    def end_run() -> None:
        if run:
            groups.append(frozenset({"".join(run)}))
            run.clear()

    def flat(items: Iterable) -> Iterable:  # a group's content continues the enclosing sequence
        for op, av in items:
            if op is _sre_parse.SUBPATTERN:
                yield from flat(av[-1])
            else:
                yield op, av

    for op, av in flat(items):
        if op is _sre_parse.LITERAL and av < 128:
            run.append(chr(av).lower())
            continue
        end_run()
        if op is _sre_parse.BRANCH:
            # One alternative matches: any of the alternatives' best groups; none if one needs nothing.
            alternatives = [_required(alt) for alt in av[1]]
            if all(alternatives):
                groups.append(frozenset().union(*(max(a, key=_selectivity) for a in alternatives)))
        elif op in (_sre_parse.MAX_REPEAT, _sre_parse.MIN_REPEAT, _sre_parse.POSSESSIVE_REPEAT) and av[0] >= 1:
            groups.extend(_required(av[2]))  # matched at least once
    end_run()
    return groups


_CASE_FREE_OPS = {_sre_parse.AT, _sre_parse.ANY, _sre_parse.CATEGORY, _sre_parse.NEGATE}


def _case_free(items: Iterable) -> bool:
    """Whether a parsed regex sequence matches lower-cased ASCII text with and without IGNORECASE
    alike: its literals (also in sets and ranges) are ASCII without capitals and it has no
    inline flags, lookarounds or backreferences. (Word boundaries, \\s, \\d, \\w and . do not depend
    on case, and with IGNORECASE a character is compared in lower case.)"""
    for op, av in items:
        if op is _sre_parse.LITERAL:
            ok = av < 128 and not chr(av).isupper()
        elif op is _sre_parse.RANGE:
            ok = av[1] < 128 and not any(chr(c).isupper() for c in range(av[0], av[1] + 1))
        elif op is _sre_parse.IN:
            ok = _case_free(av)
        elif op is _sre_parse.BRANCH:
            ok = all(_case_free(alt) for alt in av[1])
        elif op in (_sre_parse.MAX_REPEAT, _sre_parse.MIN_REPEAT, _sre_parse.POSSESSIVE_REPEAT):
            ok = _case_free(av[2])
        elif op is _sre_parse.SUBPATTERN:
            ok = av[1] == av[2] == 0 and _case_free(av[3])
        else:
            ok = op in _CASE_FREE_OPS
        if not ok:
            return False
    return True


def _lower_case_twin(rx: re.Pattern) -> re.Pattern | None:
    """rx without IGNORECASE, which on text.lower() of an ASCII text finds the same spans as rx on
    the text (case-insensitive matching is several times slower); None where that is not sure."""
    if rx.flags & re.IGNORECASE and _case_free(_sre_parse.parse(rx.pattern, rx.flags)):
        return re.compile(rx.pattern, rx.flags & ~re.IGNORECASE)
    return None


def _gate_holds(gate: tuple[tuple[str, ...], ...], folded: str) -> bool:
    for group in gate:
        for s in group:
            if s in folded:
                break
        else:
            return False
    return True


def _selectivity(group: frozenset[str]) -> tuple[int, int]:
    return min(len(s) for s in group), -len(group)


def _literal_gate(rx: re.Pattern, keep: int | None = 3) -> tuple[tuple[str, ...], ...]:
    """The `keep` (None: all) most selective groups of _required for rx (fewer are still necessary)."""
    groups = sorted(set(_required(_sre_parse.parse(rx.pattern, rx.flags))), key=_selectivity, reverse=True)
    return tuple(tuple(sorted(g, key=lambda s: (len(s), s))) for g in groups[:keep])


@cache
def _au_names(vocabulary_path: str = str(AU_VOCABULARY_FILE)) -> dict[str, str]:
    return {row["code"]: row["name"] for row in load_au_vocabulary(vocabulary_path)}


# ----------------------------------------------------------------------------- text -> tokens

# An AU code and any list of numbers continuing it: "AU 1, 2 and 5", "AUs 6/12", "AU6+AU12".
_AU_PREFIX = r"(?:\bA\.?U\.?s?|\baction\s+units?)\s*[-#]?\s*"
_AU_NUMBER = r"(\d{1,2})(?!\d)[A-E]?(?![\d.,]\d)(?![A-Za-z])"
_AU_CODE_RE = re.compile(
    _AU_PREFIX + _AU_NUMBER
    + r"(?P<more>(?:\s*(?:,\s*(?:and|or)\b|,|\+|/|&|\band\b|\bor\b|\bnor\b)\s*(?:" + _AU_PREFIX + r")?"
    + r"\d{1,2}(?!\d)[A-E]?(?![\d.,]\d)(?![A-Za-z])(?!\s*(?:of|out\s+of|on\s+the|/)\b))*)",
    re.IGNORECASE,
)
_NUMBER_RE = re.compile(r"\d{1,2}")
_TOKEN_RE = re.compile(r"\d+(?:\.\d+)?|[a-z]+(?:'[a-z]+)?|[^\sa-z\d]", re.IGNORECASE)
_LINE_TOKEN_RE = re.compile(r"\n|" + _TOKEN_RE.pattern, re.IGNORECASE)  # _TOKEN_RE, and line breaks
_HARD = {".", "!", "?", ";", ":", "\n"}
_SOFT = {",", "—", "–", "-"}
_DROPPED = {"(", ")", "[", "]", '"', "'", "*", "`", "“", "”"}
_NORMALISE = [
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
_NORMALISE_GATES = [_literal_gate(rx) for rx, _ in _NORMALISE]


@dataclass(slots=True)
class _Token:
    text: str  # lower-case word(s) or punctuation; "" for a mention
    cats: frozenset[str] = frozenset()
    mention: _Mention | None = None


def _find_mentions(text: str, lex: _Lexicon) -> list[tuple[int, int, _Mention]]:
    found: list[tuple[int, int, _Mention]] = []
    for m in _AU_CODE_RE.finditer(text):
        found.append((m.start(), m.end(), _au_code_mention(m.group(1), m.group("more"))))
    low = _folded(text)
    ascii_text = text.isascii()  # then low is text.lower(), position for position
    # compress: the entries whose first needed string occurs (the test runs in C, no Python loop).
    scan = compress(lex.au_phrase_scan, map(low.__contains__, lex.au_phrase_firsts))
    for first, back, rest, rx, rx_lower, plain, negated in scan:
        if rest and not _gate_holds(rest, low):
            continue  # rx cannot match
        if ascii_text and rx_lower:
            # A match holds `first` and is at most len(first) - back long: none starts before `start`.
            start = low.find(first) + back
            matches = rx_lower.finditer(low, start if start > 0 else 0)
        else:
            matches = rx.finditer(text)
        for m in matches:
            mention = negated if any(w in lex.negation_words for w in _words(m.group(0))) else plain
            found.append((m.start(), m.end(), mention))
    emotion_lower = lex.emotion_re_lower
    for m in emotion_lower.finditer(low) if ascii_text and emotion_lower else lex.emotion_re.finditer(text):
        found.append((m.start(), m.end(), lex.emotion_mention[" ".join(m.group(0).lower().split())]))
    # Longest first, then leftmost; drop mentions overlapping a kept one.
    found.sort(key=lambda f: (-(f[1] - f[0]), f[0]))
    kept: list[tuple[int, int, _Mention]] = []
    for found_one in found:
        start, end, _ = found_one
        for s, e, _ in kept:
            if end > s and start < e:
                break
        else:
            kept.append(found_one)
    return sorted(kept, key=lambda f: f[0])


@lru_cache(maxsize=1024)
def _au_code_mention(number: str, more: str | None) -> _Mention:
    numbers = [number, *_NUMBER_RE.findall(more or "")]
    codes = tuple(dict.fromkeys(f"AU{int(n)}" for n in numbers))
    return _Mention("au", codes, "all", False)


_MENTION_CATS = frozenset({"mention"})


def _tokenise(text: str, lex: _Lexicon) -> list[_Token]:
    low = _folded(text)
    for (rx, repl), gate in zip(_NORMALISE, _NORMALISE_GATES, strict=True):
        if _gate_holds(gate, low):  # else rx cannot match: the sub would change nothing
            replaced = rx.sub(repl, text)
            if replaced != text:
                text, low = replaced, _folded(replaced)
    tokens: list[_Token] = []
    pos = 0
    for start, end, mention in [*_find_mentions(text, lex), (len(text), len(text), None)]:
        tokens.extend(_cue_tokens(_plain_words(text[pos:start]), lex))
        if mention is not None:
            tokens.append(_Token("", _MENTION_CATS, mention))
        pos = end
    return tokens


def _plain_words(chunk: str) -> list[str]:
    # Tokens never contain "\n", so one scan finds the tokens of each line and the line breaks between.
    return [w.lower() for w in _LINE_TOKEN_RE.findall(chunk) if w not in _DROPPED]


def _cue_tokens(words: list[str], lex: _Lexicon) -> list[_Token]:
    tokens: list[_Token] = []
    i = 0
    while i < len(words):
        # Longest cue first; only the lengths of cues starting with this word can match.
        for n in lex.cue_lengths.get(words[i], ()):
            cats = lex.cues.get(tuple(words[i : i + n])) if n <= len(words) - i else None
            if cats:
                tokens.append(_Token(" ".join(words[i : i + n]), cats))
                i += n
                break
        else:
            tokens.append(_Token(words[i]))
            i += 1
    return tokens


# ----------------------------------------------------------------------------- tokens -> clauses


def _sentences(tokens: list[_Token]) -> list[tuple[list[_Token], bool]]:
    """(tokens, is_question) per sentence."""
    out: list[tuple[list[_Token], bool]] = []
    current: list[_Token] = []
    for tok in tokens:
        if tok.text in _HARD:
            if current:
                out.append((current, tok.text == "?"))
            current = []
        else:
            current.append(tok)
    if current:
        out.append((current, False))
    return out


def _is_mention(tok: _Token) -> bool:
    return tok.mention is not None


def _has_verb(tokens: Sequence[_Token]) -> bool:
    return any("verb" in t.cats for t in tokens)


def _list_continues(tokens: list[_Token], i: int) -> bool:
    """Whether the comma at i only separates items of a list of mentions ("AU1, AU2 and AU5")."""
    j = i + 1
    if j < len(tokens) and tokens[j].text in {"and", "or", "nor"}:
        j += 1
    if j >= len(tokens) or not _is_mention(tokens[j]):
        return False
    while j < len(tokens) and _is_mention(tokens[j]):
        j += 1
    return j >= len(tokens) or "connector" in tokens[j].cats


def _clauses(sentence: list[_Token]) -> list[list[_Token]]:
    clauses: list[list[_Token]] = []
    current: list[_Token] = []
    for i, tok in enumerate(sentence):
        split = False
        if tok.text in _SOFT:
            split = not (tok.text == "," and _list_continues(sentence, i))
        elif "clause_break" in tok.cats:
            split = True
        elif tok.text in {"and", "or"}:
            # "AU12 is present and AU6 is absent": two clauses; "AU6 and AU12 are absent": one.
            rest = []
            for t in sentence[i + 1 :]:
                if t.text in _SOFT or "clause_break" in t.cats:
                    break
                rest.append(t)
            split = _has_verb(current) and _has_verb(rest)
        if split:
            if current:
                clauses.append(current)
            # A break word opens the next clause (an ellipsis cue there matters); punctuation goes.
            current = [tok] if "clause_break" in tok.cats else []
        else:
            current.append(tok)
    if current:
        clauses.append(current)
    return clauses


def _np_scope(clause: list[_Token], j: int) -> list[int]:
    """Indices of the mentions in the noun phrase after the cue at j ("without AU6 or AU7")."""
    hits: list[int] = []
    k, gap = j + 1, 0
    while k < len(clause):
        tok = clause[k]
        if _is_mention(tok):
            hits.append(k)
            k += 1
            # Continue only through a connector to the next mention: "AU6, AU7 or AU9".
            m = k
            while m < len(clause) and "connector" in clause[m].cats:
                m += 1
            if m == k:
                break
            filler = 0
            while m < len(clause) and not _is_mention(clause[m]) and filler < 2 and "verb" not in clause[m].cats:
                m += 1
                filler += 1
            if m < len(clause) and _is_mention(clause[m]):
                k = m
                continue
            break
        if "verb" in tok.cats or gap >= 3 or tok.cats & {"negation_clause", "negation_np", "absence"}:
            break
        gap += 1
        k += 1
    return hits


def _denied(clause: list[_Token], sentence_start: bool) -> set[int]:
    """Indices of the mentions that a negation in the clause denies."""
    mentions = [i for i, t in enumerate(clause) if t.mention is not None]
    if not mentions:
        return set()  # nothing to deny
    denied = {i for i in mentions if clause[i].mention.negated}
    for j, tok in enumerate(clause):
        if not tok.cats:
            continue
        if "negation_np" in tok.cats:
            denied.update(_np_scope(clause, j))
        elif "absence" in tok.cats:
            scope = _np_scope(clause, j)
            denied.update(scope or [i for i in mentions if i < j])
        elif "negation_clause" in tok.cats:
            before = [i for i in mentions if i < j]
            after = [i for i in mentions if i > j]
            if tok.text == "no" and j == 0 and sentence_start and (len(clause) == 1 or not after):
                continue  # the interjection "No," answering a question
            denied.update(after)
            k = j + 1
            while k < len(clause) and "filler_after_negation" in clause[k].cats:
                k += 1
            if k >= len(clause) or "presence" in clause[k].cats:
                denied.update(before)  # "AU4 is not present", "AU6 is not"
            elif j > 0 and "copula" in clause[j - 1].cats:
                # "Anger is not the answer": an emotion as subject of a negated copula.
                denied.update(i for i in before if clause[i].mention.kind == "emotion")
    return denied


def _framed(clause: list[_Token], i: int) -> bool:
    """Whether the mention at i is named as a category ("do not form the pattern of fear")."""
    return any("frame" in t.cats for t in clause[max(0, i - 3) : i])


# ----------------------------------------------------------------------------- public API


def extract_claims(text: str) -> Claims:
    """The emotions and AUs that `text` affirms, denies or hedges (see the module docstring)."""
    if not isinstance(text, str):
        raise TypeError(f"extract_claims needs a str, got {type(text).__name__}")
    # Texts repeat across rows (templates, multi-turn answers); a str subclass skips the cache (its
    # hash or equality might not be the value's).
    return _cached_claims(text) if type(text) is str else _extract_claims(text)


@lru_cache(maxsize=4096)
def _cached_claims(text: str) -> Claims:
    return _extract_claims(text)


def _extract_claims(text: str) -> Claims:
    lex = _lexicon()
    sets: dict[str, set[str]] = {
        k: set() for k in ("affirmed_emotions", "denied_emotions", "affirmed_aus", "denied_aus",
                           "hedged_emotions", "hedged_aus")
    }
    for sentence, question in _sentences(_tokenise(text, lex)):
        if question:
            continue
        previous_denied = False
        for n, clause in enumerate(_clauses(sentence)):
            if any("generic" in t.cats for t in clause):
                continue
            hedged = any("hedge" in t.cats for t in clause)
            denied = _denied(clause, sentence_start=n == 0)
            if previous_denied and "ellipsis" in clause[0].cats:
                # "AU12 is missing, and so is AU6": the ellipsis repeats the negation.
                denied |= {i for i, t in enumerate(clause) if _is_mention(t)}
            if any(_is_mention(t) for t in clause):
                previous_denied = bool(denied)
            for i, tok in enumerate(clause):
                if tok.mention is None or (i in denied and _framed(clause, i)):
                    continue
                polarity = "denied" if i in denied else "hedged" if hedged else "affirmed"
                m = tok.mention
                kind = "emotions" if m.kind == "emotion" else "aus"
                values = [m.values[0]] if m.kind == "emotion" else _au_keys(m)
                sets[f"{polarity}_{kind}"].update(values)
    return Claims(**{k: frozenset(v) for k, v in sets.items()})


def _au_keys(m: _Mention) -> list[str]:
    if m.mode == "any" and len(m.values) > 1:
        return ["|".join(sorted(m.values, key=lambda c: int(c[2:])))]
    return list(m.values)


def _au_label(key: str, names: dict[str, str]) -> str:
    return " or ".join(f"{c} ({names[c]})" if c in names else c for c in key.split("|"))


def verify(
    text: str,
    emotion: str | None,
    au_present: Iterable[str],
    task: str | None = None,
    au_vocabulary: str | Path | None = None,
    must_state_emotion: bool | None = None,
) -> Verdict:
    """Check the claims of `text` against a face's labels.

    Ungrounded when the text affirms (or hedges) an AU that is not in `au_present`, denies one
    that is, affirms an emotion other than the label, denies the label, hedges another emotion
    without affirming the label, or, for a task that must state the emotion
    (`tasks_stating_emotion()`, or `must_state_emotion`), does not affirm the label. With no label
    (`emotion` None) only AU claims are checked, except that such a task may not name an emotion.
    `au_vocabulary` (the CSV; default schemas/au_vocabulary.csv) gives the AU names used in reasons
    and the AUs that are measured.
    """
    claims = extract_claims(text)
    names = _au_names(str(au_vocabulary or AU_VOCABULARY_FILE))
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
    must = must_state_emotion if must_state_emotion is not None else task in tasks_stating_emotion()
    if emotion is None and must and (claims.affirmed_emotions or claims.hedged_emotions):
        names_ = sorted(claims.affirmed_emotions | claims.hedged_emotions)
        reasons.append(f"states {', '.join(names_)} but the face has no emotion label")
    if emotion is not None:
        if emotion not in canonical_emotions():
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


def disagreements(answer: str, emotion: str | None, au_present: Iterable[str], task: str | None) -> list[str]:
    """Reasons `answer` disagrees with the labels; empty when it is grounded (`verify(...).reasons`)."""
    return list(verify(answer, emotion, au_present, task).reasons)
