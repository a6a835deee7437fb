"""The fast paths of pipeline.grounding change no result.

* Every regex pre-filter (prefilter.literal_gate) is a necessary condition: it holds on every text the regex
  matches, in any case, also with the non-ASCII characters that IGNORECASE maps to ASCII.
* The lower-case twins of the regexes find the same spans on lower-cased ASCII text, and no match
  starts before the position the scan starts from.
* find_mentions, tokenise, denied_mentions and extract_claims equal the original implementation
  (kept below as the reference) on the fixture texts, every template answer, and generated texts.
* The pre-filter's own regex parser reads our syntax conservatively: on random patterns of that
  syntax too, gates hold, twins agree and the longest-match bound holds; a pattern outside it gets
  no gate, no twin and no bound.
"""

from __future__ import annotations

import random
import re
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.domain.vocabulary import load_au_vocabulary
from pipeline.grounding import extract_claims, prefilter
from pipeline.grounding.claims import (
    Claims,
    claims_from_tokens,
    clauses,
    denied_mentions,
    is_mention,
    np_scope,
    sentences,
)
from pipeline.grounding.lexicon import TOKEN_RE, Lexicon, Mention, lexicon_of, phrase_scan, words
from pipeline.grounding.tokens import AU_CODE_RE, DROPPED, NORMALISE, NUMBER_RE, Token, find_mentions, tokenise
from pipeline.knowledge import packaged

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from benchmarks.verifier_eval import load_fixture  # noqa: E402
from tests.test_render import every_template_conversation  # noqa: E402

LEX = lexicon_of()

# ----------------------------------------------------------------------------- the reference
# The original (un-gated, un-cached) implementation, verbatim but for names.


def ref_find_mentions(text: str, lex: Lexicon) -> list[tuple[int, int, Mention]]:
    found: list[tuple[int, int, Mention]] = []
    for m in AU_CODE_RE.finditer(text):
        numbers = [m.group(1), *NUMBER_RE.findall(m.group("more") or "")]
        codes = tuple(dict.fromkeys(f"AU{int(n)}" for n in numbers))
        found.append((m.start(), m.end(), Mention("au", codes, "all", False)))
    for rx, aus, mode in lex.au_phrases:
        for m in rx.finditer(text):
            negated = any(w in lex.negation_words for w in words(m.group(0)))
            found.append((m.start(), m.end(), Mention("au", aus, mode, negated)))
    for m in lex.emotion_re.finditer(text):
        emotion = lex.emotion_of[" ".join(m.group(0).lower().split())]
        found.append((m.start(), m.end(), Mention("emotion", (emotion,), "all", False)))
    found.sort(key=lambda f: (-(f[1] - f[0]), f[0]))
    kept: list[tuple[int, int, Mention]] = []
    for start, end, mention in found:
        if all(end <= s or start >= e for s, e, _ in kept):
            kept.append((start, end, mention))
    return sorted(kept, key=lambda f: f[0])


def ref_normalise(text: str) -> str:
    for rx, repl in NORMALISE:
        text = rx.sub(repl, text)
    return text


def ref_tokenise(text: str, lex: Lexicon) -> tuple[list[tuple[int, int, Mention]], list[Token]]:
    """(the mentions, the tokens) of text."""
    text = ref_normalise(text)
    tokens: list[Token] = []
    pos = 0
    mentions = ref_find_mentions(text, lex)
    for start, end, mention in [*mentions, (len(text), len(text), None)]:
        tokens.extend(ref_cue_tokens(ref_plain_words(text[pos:start]), lex))
        if mention is not None:
            tokens.append(Token("", frozenset({"mention"}), mention))
        pos = end
    return mentions, tokens


def ref_plain_words(chunk: str) -> list[str]:
    out: list[str] = []
    for line_no, line in enumerate(chunk.split("\n")):
        if line_no:
            out.append("\n")
        out.extend(w.lower() for w in TOKEN_RE.findall(line) if w not in DROPPED)
    return out


MAX_CUE_LEN = max(len(k) for k in LEX.cues)


def ref_cue_tokens(words: list[str], lex: Lexicon) -> list[Token]:
    """The original rule, written plainly: left to right, the longest cue starting at each word
    (any length up to the longest cue), else the word alone."""
    tokens: list[Token] = []
    i = 0
    while i < len(words):
        lengths = [n for n in range(1, min(MAX_CUE_LEN, len(words) - i) + 1) if lex.cues.get(tuple(words[i : i + n]))]
        n = max(lengths, default=0)
        tokens.append(Token(" ".join(words[i : i + n]), lex.cues[tuple(words[i : i + n])]) if n else Token(words[i]))
        i += max(n, 1)
    return tokens


def ref_denied(clause: list[Token], sentence_start: bool) -> set[int]:
    denied = {i for i, t in enumerate(clause) if t.mention is not None and t.mention.negated}
    for j, tok in enumerate(clause):
        before = [i for i in range(j) if is_mention(clause[i])]
        after = [i for i in range(j + 1, len(clause)) if is_mention(clause[i])]
        if "negation_np" in tok.cats:
            denied.update(np_scope(clause, j))
        elif "absence" in tok.cats:
            scope = np_scope(clause, j)
            denied.update(scope or before)
        elif "negation_clause" in tok.cats:
            if tok.text == "no" and j == 0 and sentence_start and (len(clause) == 1 or not after):
                continue
            denied.update(after)
            k = j + 1
            while k < len(clause) and "filler_after_negation" in clause[k].cats:
                k += 1
            if k >= len(clause) or "presence" in clause[k].cats:
                denied.update(before)
            elif j > 0 and "copula" in clause[j - 1].cats:
                denied.update(i for i in before if clause[i].mention.kind == "emotion")
    return denied


def assert_same_denials(tokens: list[Token]) -> None:
    """denied_mentions agrees with the reference on every clause of `tokens` (questions and generic
    clauses too). It is the one step of tokens -> claims with a fast path: with the same denials, the
    claims are what claims_from_tokens (the original loop, moved) makes of the same tokens."""
    for sentence, _question in sentences(tokens):
        for n, clause in enumerate(clauses(sentence)):
            assert denied_mentions(clause, n == 0) == ref_denied(clause, n == 0), clause


def ref_extract_claims(text: str) -> Claims:
    tokens = ref_tokenise(text, LEX)[1]
    assert_same_denials(tokens)
    return claims_from_tokens(tokens)


def uncached_claims(text: str) -> Claims:
    return claims_from_tokens(tokenise(text, LEX))


def outcome(f: Callable[..., object], *args: object) -> tuple[str, object]:
    """f(*args), or the exception it raises (an emotion word spelt with "ſ" raises KeyError in both)."""
    try:
        return "returns", f(*args)
    except Exception as e:
        return "raises", (type(e), str(e))


def assert_same(text: str) -> None:
    """The fast implementation agrees with the reference on `text`, step by step."""
    expected = outcome(ref_tokenise, text, LEX)
    if expected[0] == "returns":
        mentions, tokens = expected[1]
        # Compared first, asserted after: pytest's diff of two long token lists can take minutes.
        same_mentions = find_mentions(ref_normalise(text), LEX) == mentions
        assert same_mentions, text
        same_tokens = tokenise(text, LEX) == tokens
        assert same_tokens, text
        assert_same_denials(tokens)
        expected = outcome(claims_from_tokens, tokens)
    assert outcome(uncached_claims, text) == expected, text
    assert outcome(extract_claims, text) == expected, text  # through the cache


# ----------------------------------------------------------------------------- texts

_DATA = packaged().lexicon
_VOCAB = load_au_vocabulary(ROOT / "schemas" / "au_vocabulary.csv")
_PHRASE_WORDS = sorted({w for e in _DATA["au_phrases"] for p in e["patterns"] for w in re.findall(r"[a-z]+", p)})
_WORDS = sorted(
    set(LEX.emotion_of) | set(_DATA["modifiers"]) | {p for ps in _DATA["cues"].values() for p in ps}
    | {row["name"] for row in _VOCAB} | set(_PHRASE_WORDS)
    | {"isn't", "can't", "cannot", "won't", "doesn't", "it's", "she's", "they're", "I'm", "e.g.", "i.e.", "vs.",
       "crow's feet", "lip-corner puller", "down-turned", "wide-eyed", "the", "face", "shows", "and", "or", "but",
       "with", "without", "is", "are", "not", "no", "neither", "nor", "might", "typically", "if", "present"}
)
_AU_FORMS = ["AU{a}", "AU {a}", "AU-{a}", "au{a}", "A.U. {a}", "AU #{a}", "action unit {a}", "Action Units {a} and {b}",
             "AUs {a}, {b} and {c}", "AU{a}+AU{b}", "AU{a}/{b}", "AU {a} & {b}", "AU{a}C", "AU{a}{b}", "AU{a}.5",
             "AU {a} of {b}", "AU{a}, or AU{b}", "AU {a} nor {b}", "AU{a}x"]
_PUNCT = [".", ",", ";", ":", "!", "?", "-", "—", "–", "(", ")", "[", "]", "'", '"', "“", "”", "’", "‘", "`", "*",
          "\n", "...", " - "]
_SEPARATORS = [" ", " ", " ", "", "\n", ", ", ". ", "  "]
_CASE_VARIANTS = {"i": "iI\u0131\u0130", "s": "sS\u017f", "k": "kK\u212a"}  # with what IGNORECASE folds to ASCII


def _vary_case(text: str, rng: random.Random) -> str:
    mode = rng.random()
    if mode < 0.5:
        return text
    if mode < 0.6:
        return text.upper()
    if mode < 0.7:
        return text.title()
    return "".join(rng.choice(_CASE_VARIANTS.get(c.lower(), c + c.swapcase())) if rng.random() < 0.3 else c
                   for c in text)


def _piece(rng: random.Random) -> str:
    kind = rng.random()
    if kind < 0.15:
        a, b, c = (rng.choice([1, 2, 4, 5, 6, 7, 9, 12, 15, 17, 20, 23, 25, 26, 99, 123, 0]) for _ in range(3))
        return rng.choice(_AU_FORMS).format(a=a, b=b, c=c)
    if kind < 0.25:
        return rng.choice(_PUNCT)
    return rng.choice(_WORDS)


def _random_text(rng: random.Random) -> str:
    parts = []
    for _ in range(rng.randint(1, 30)):
        parts += [_vary_case(_piece(rng), rng), rng.choice(_SEPARATORS)]
    return "".join(parts)


def _template_texts() -> list[str]:
    texts: set[str] = set()
    for _task, _a, _context, conv in every_template_conversation():
        answers = [t["content"] for t in conv if t["role"] == "assistant"]
        texts.update(answers)
        texts.add("\n".join(answers))
    return sorted(texts)


# ----------------------------------------------------------------------------- regex pre-filters


def test_fold_table_is_every_non_ascii_match_of_an_ascii_literal() -> None:
    everything = "".join(chr(c) for c in range(128, sys.maxunicode + 1))
    found: dict[str, str] = {}
    for code in range(128):
        literal = re.escape(chr(code))
        for flags in (0, re.IGNORECASE, re.IGNORECASE | re.ASCII):
            for m in re.finditer(literal, everything, flags):
                assert found.setdefault(m.group(), chr(code).lower()) == chr(code).lower()
            # ASCII matches are the case variants, which lower() unites.
            assert {c.lower() for c in map(chr, range(128)) if re.fullmatch(literal, c, flags)} == {chr(code).lower()}
    assert found == {chr(k): v for k, v in prefilter.FOLD.items()}
    assert prefilter.folded("Smıle ſMİLE SMILE") == "smile smile smile"


def test_literal_gate_reads_patterns_conservatively() -> None:
    def gate(pattern: str, flags: int = re.IGNORECASE) -> set[tuple[str, ...]]:
        return set(prefilter.literal_gate(re.compile(pattern, flags), keep=None))

    assert gate(r"\b(?:(?:raised|lifted) (?:eye)?brows?)\b") == {("lifted", "raised"), (" ",), ("brow",)}
    assert gate(r"a(?:bc)?d") == {("a",), ("d",)}  # optional part: nothing, and the run ends
    assert gate(r"ab(?:c|d+)e") == {("ab",), ("c", "d"), ("e",)}
    assert gate(r"(?:abc|x?)y") == {("y",)}  # an alternative that needs nothing
    assert gate(r"(?:ab){2,3}[xy]z\w*") == {("ab",), ("z",)}
    assert gate(r"éſx") == {("x",)}  # non-ASCII literals: nothing
    assert gate(r"\bcan'?t\b|\bcannot\b") == {("can",), ("t", "not")}  # the start both options share
    assert gate(r"(?=abc)d(?!e)") == gate(r"é\u017fx") == set()  # outside our syntax: no gate, always run
    assert gate(r"") == set()


# Every gated regex (the AU phrases, the normalising substitutions), and the emotion regex for its twin.
_GATED = [rx for rx, _, _ in LEX.au_phrases] + [rx for rx, _ in NORMALISE] + [LEX.emotion_re]


@st.composite
def _cased_match(draw: st.DrawFn, rx: re.Pattern, short: bool = False) -> str:
    """A text holding a match of rx (hypothesis' from_regex), its letters re-cased at random,
    sometimes with the non-ASCII characters that IGNORECASE matches to i, s and k. short: a match of
    at most 12 characters between pads of at most 4, for random patterns, which may nest quantifiers
    ("(?:a+)+b"): `re` backtracks exponentially in the length of a text it fails on, and from_regex's
    own padding runs such a search on texts of any length."""
    if short:
        pad = st.text(alphabet="abcAé ſ-'.\\0k", max_size=4)
        core = st.from_regex(rx, fullmatch=True).filter(lambda t: len(t) <= 12)
        text = draw(pad) + draw(core) + draw(pad)
    else:
        text = draw(st.from_regex(rx))
    flips = draw(st.lists(st.integers(0, max(len(text) - 1, 0)), max_size=6))
    chars = list(text)
    for i in flips:
        if chars and chars[i].isalpha():
            chars[i] = draw(st.sampled_from(_CASE_VARIANTS.get(chars[i].lower(), chars[i].lower() + chars[i].upper())))
    return "".join(chars)


@pytest.mark.parametrize("index", range(len(_GATED)))
@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(data=st.data())
def test_gates_hold_and_twins_agree_on_matches(index: int, data: st.DataObject) -> None:
    rx = _GATED[index]
    text = data.draw(_cased_match(rx))
    folded = prefilter.folded(text)
    matches = list(rx.finditer(text))
    if matches:
        assert prefilter.gate_holds(prefilter.literal_gate(rx, keep=None), folded)
    twin = LEX.emotion_re_lower if rx is LEX.emotion_re else prefilter.lower_case_twin(rx)
    if twin is not None and text.isascii():
        assert [m.span() for m in twin.finditer(text.lower())] == [m.span() for m in matches]
    if index < len(LEX.au_phrases):
        first, back, rest, _, phrase_twin, _, _ = LEX.au_phrase_scan[index]
        assert LEX.au_phrase_firsts[index] == first
        if matches:
            assert first in folded and prefilter.gate_holds(rest, folded)
            if text.isascii():
                assert all(m.start() >= folded.find(first) + back for m in matches)
        # Every lexicon phrase gets the fast path: a string to test first, a bound, a twin.
        assert first and back is not None and phrase_twin is not None


def test_every_regex_is_read_by_the_parser() -> None:
    for rx in _GATED:
        assert prefilter.parse(rx.pattern, rx.flags) is not None, rx.pattern  # else it would run ungated


def test_patterns_outside_the_syntax_get_no_fast_path() -> None:
    outside = [r"(?=a)b", r"a(?!b)", r"(?<=a)b", r"(?P<x>ab)", r"(?i:ab)", r"(?#c)ab", r"(a)\1", r"\Aab", r"ab$",
               r"^ab", r"a.b", r"\u017fab", r"\nab", r"[]a]", r"[!-\]]", r"[!-\-]", r"ab{1,2", r"ab}", r"\Bab",
               r"[\b]ab", r"(?>ab)", r"ab\Z"]
    for pattern in outside:
        rx = re.compile(pattern, re.IGNORECASE)
        assert prefilter.parse(pattern, rx.flags) is None, pattern
        assert prefilter.literal_gate(rx) == (), pattern
        assert prefilter.lower_case_twin(rx) is None, pattern
        assert prefilter.longest_match(rx) is None, pattern
    assert prefilter.parse("ab", re.IGNORECASE | re.VERBOSE) is None  # a flag that changes the reading


def test_longest_match() -> None:
    def longest(pattern: str) -> int | None:
        return prefilter.longest_match(re.compile(pattern, re.IGNORECASE))

    assert longest(r"\bbrows?\b") == 5
    assert longest(r"(?:ab){2,3}[xy]\s") == 8
    assert longest(r"(?:abc|x?)y") == 4
    assert longest(r"a{,2}b{3}(c)??") == 6
    assert longest(r"a+") is None and longest(r"a{2,}") is None and longest(r"\w*") is None
    assert longest(r"") == 0


# Random patterns of the syntax the parser reads: literals (ASCII, non-ASCII, escaped), sets, class
# escapes, word boundaries, groups, alternatives, quantifiers (greedy, lazy, possessive).
_ATOMS = st.sampled_from(["a", "b", "c", "A", "é", "ſ", " ", "-", "'", r"\-", r"\ ", r"\.", r"\\", "[- ]", "[a-c]",
                          "[^a]", "[A-Z]", "[0-a]", "[ab-]", r"[\s']", r"\s", r"\w", r"\d", r"\W"])
_QUANTIFIERS = st.sampled_from(["", "", "", "?", "*", "+", "{2}", "{0,3}", "{1,}", "{,2}", "??", "+?", "?+"])


# A group repeats a bounded number of times: nested unbounded repeats ("(?:a+)+") backtrack exponentially
# in `re`, and in from_regex's own filtering, which would hang the test rather than test the parser.
_BOUNDED = st.sampled_from(["", "", "?", "{2}", "{0,3}", "{,2}", "??", "?+"])


def _sequences(items: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.lists(st.one_of(items, st.just(r"\b")), max_size=5).map("".join)


def _groups(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    options = st.lists(_sequences(inner), min_size=1, max_size=3).map("|".join)
    return st.tuples(st.sampled_from(["(?:", "("]), options, _BOUNDED).map(lambda t: f"{t[0]}{t[1]}){t[2]}")


_PATTERNS = _sequences(st.recursive(st.tuples(_ATOMS, _QUANTIFIERS).map("".join), _groups, max_leaves=8))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(pattern=_PATTERNS, ignore_case=st.booleans(), data=st.data())
def test_parser_is_conservative_on_random_patterns(pattern: str, ignore_case: bool, data: st.DataObject) -> None:
    rx = re.compile(pattern, re.IGNORECASE if ignore_case else 0)
    assert prefilter.parse(rx.pattern, rx.flags) is not None, pattern
    text = data.draw(_cased_match(rx, short=True))
    scan = phrase_scan(rx, ("AU1",), "all")
    gate, longest = prefilter.literal_gate(rx, keep=None), prefilter.longest_match(rx)
    for pos in range(len(text) + 1):  # the match at every position, not only finditer's
        m = rx.match(text, pos)
        if m:
            assert prefilter.gate_holds(gate, prefilter.folded(m.group())), (pattern, text)
            assert longest is None or m.end() - m.start() <= longest, (pattern, text)
    folded = prefilter.folded(text)
    matches = list(rx.finditer(text))
    if matches:
        assert scan.first in folded and prefilter.gate_holds(scan.rest, folded), (pattern, text)
        if text.isascii() and scan.back is not None:
            assert all(m.start() >= folded.find(scan.first) + scan.back for m in matches), (pattern, text)
    if scan.twin is not None and text.isascii():
        assert [m.span() for m in scan.twin.finditer(text.lower())] == [m.span() for m in matches], (pattern, text)


def test_twins_only_where_case_cannot_matter() -> None:
    for pattern in [r"A", r"[0-a]", r"[^A-Z]", r"(?-i:a)b", r"\u017f", r"(a)\1", r"(?=a)"]:
        assert prefilter.lower_case_twin(re.compile(pattern, re.IGNORECASE)) is None, pattern
    assert prefilter.lower_case_twin(re.compile(r"a")) is None  # not IGNORECASE: nothing to gain
    twin = prefilter.lower_case_twin(re.compile(r"\bbrows? [a-z0-9'-]+(?:\s+up)?\b", re.IGNORECASE))
    assert twin is not None and not twin.flags & re.IGNORECASE
    assert LEX.emotion_re_lower is not None


# ----------------------------------------------------------------------------- end to end


def test_same_claims_on_fixture_and_template_texts() -> None:
    texts = [row["text"] for row in load_fixture()] + _template_texts()
    assert len(texts) > 1000
    for text in texts:
        assert_same(text)


def test_same_claims_on_random_texts() -> None:
    rng = random.Random(20240611)
    for _ in range(1200):
        assert_same(_random_text(rng))


_PIECES = st.one_of(
    st.sampled_from(_WORDS),
    st.sampled_from(_PUNCT),
    st.builds(lambda f, a, b, c: f.format(a=a, b=b, c=c), st.sampled_from(_AU_FORMS),
              *(st.integers(0, 130) for _ in range(3))),
    st.sampled_from(LEX.au_phrases).flatmap(lambda p: st.from_regex(p[0], alphabet=st.characters(codec="ascii"))),
    st.sampled_from(LEX.au_phrases).flatmap(lambda p: _cased_match(p[0])),
    st.text(max_size=4),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(parts=st.lists(st.tuples(_PIECES, st.sampled_from(_SEPARATORS)), min_size=1, max_size=20),
       seed=st.integers(0, 2**32))
def test_same_claims_on_generated_texts(parts: list[tuple[str, str]], seed: int) -> None:
    rng = random.Random(seed)
    assert_same("".join(_vary_case(p, rng) + sep for p, sep in parts))


def test_cache_is_transparent() -> None:
    text = "AU12 is active but AU4 is not; she looks happy."
    assert extract_claims(text) == extract_claims(text) == ref_extract_claims(text)

    class Text(str):
        pass

    assert extract_claims(Text(text)) == ref_extract_claims(text)
    with pytest.raises(TypeError):
        extract_claims(b"AU12")  # type: ignore[arg-type]
