"""The regex pre-filter: cheap tests that let most lexicon regexes skip most texts, results unchanged.

Most AU-phrase regexes cannot match most texts, and a substring test is much cheaper than a regex
scan. `literal_gate` derives from a regex a necessary condition for a match: groups of strings, one
of each group occurring in `folded(text)`. A regex whose gate fails is skipped; one whose gate holds
runs as before, so the mentions found are the same. `lower_case_twin` gives a regex that finds the
same spans on lower-cased ASCII text without IGNORECASE (several times faster), and `longest_match`
bounds where a match can start.

All three read the pattern with `parse`, a small parser of our own for the restricted syntax the
lexicon uses (literals, escaped punctuation, `[...]` sets, \\b \\s \\w \\d and their negations,
groups, `|`, quantifiers). A pattern outside that syntax parses to None and gets no gate (it always
runs), no twin and no bound: what the parser does not know can make matching slower, never wrong.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

# ----------------------------------------------------------------------------- the parsed form


@dataclass(frozen=True)
class Char:
    """One literal character."""

    char: str


@dataclass(frozen=True)
class CharSet:
    """One character out of a set: `[...]`, or a class escape such as \\s."""

    chars: str = ""  # listed characters
    ranges: tuple[tuple[str, str], ...] = ()  # inclusive ranges: ("a", "z")
    classes: str = ""  # class escapes inside, by letter ("s", "W", ...): none depends on case
    negated: bool = False


@dataclass(frozen=True)
class Boundary:
    """\\b: matches no character."""


@dataclass(frozen=True)
class Alternation:
    options: tuple[tuple[Node, ...], ...]


@dataclass(frozen=True)
class Repeat:
    low: int
    high: int | None  # None: unbounded
    body: tuple[Node, ...]


Node = Char | CharSet | Boundary | Alternation | Repeat


class _Outside(Exception):
    """The pattern uses syntax `parse` does not read."""


# Flags that change how a pattern reads (VERBOSE) or which we have not reasoned about (LOCALE).
_UNREAD_FLAGS = re.VERBOSE | re.LOCALE | re.DEBUG
_CLASS_ESCAPES = "sSwWdD"
_QUANTIFIER_RE = re.compile(r"\{(\d+)(,(\d*))?\}|\{,(\d+)\}")
_SPECIAL = set(".^$*+?{}[]|()")


@lru_cache(maxsize=512)
def parse(pattern: str, flags: int = 0) -> tuple[Node, ...] | None:
    """The pattern as a sequence of nodes, or None if it is outside the syntax this module reads."""
    if flags & _UNREAD_FLAGS:
        return None
    try:
        nodes, end = _parse_alternation(pattern, 0)
    except _Outside:
        return None
    return nodes if end == len(pattern) else None


def _parse_alternation(p: str, i: int) -> tuple[tuple[Node, ...], int]:
    """The alternatives from i up to an unmatched ")" or the end, as one sequence."""
    options = []
    while True:
        sequence, i = _parse_sequence(p, i)
        options.append(sequence)
        if i < len(p) and p[i] == "|":
            i += 1
            continue
        return _alternation(options), i


def _alternation(options: list[tuple[Node, ...]]) -> tuple[Node, ...]:
    """One option as it is; several: the start they share, then the choice (as re's own parser does;
    the strings matched are the same, and the shared start joins the literal run before it)."""
    if len(options) == 1:
        return options[0]
    shared: list[Node] = []
    while all(options) and all(o[0] == options[0][0] for o in options):
        shared.append(options[0][0])
        options = [o[1:] for o in options]
    return (*shared, Alternation(tuple(options)))


def _parse_sequence(p: str, i: int) -> tuple[tuple[Node, ...], int]:
    items: list[tuple[Node, ...]] = []  # one entry per atom: a group contributes its whole sequence
    while i < len(p) and p[i] not in "|)":
        c = p[i]
        if c == "(":
            if p.startswith("(?:", i):
                inner, i = _parse_alternation(p, i + 3)
            elif p.startswith("(?", i):
                raise _Outside  # lookarounds, named groups, inline flags, comments
            else:
                inner, i = _parse_alternation(p, i + 1)
            if i >= len(p) or p[i] != ")":
                raise _Outside
            atom, i = inner, i + 1
        elif c == "[":
            node, i = _parse_set(p, i + 1)
            atom = (node,)
        elif c == "\\":
            node, i = _parse_escape(p, i + 1)
            atom = (node,)
        elif c in _SPECIAL:
            raise _Outside  # . ^ $, a quantifier with nothing to repeat, a stray bracket
        else:
            atom, i = (Char(c),), i + 1
        quantifier, i = _parse_quantifier(p, i)
        if quantifier is not None:
            atom = (Repeat(*quantifier, atom),)
        items.append(atom)
    return tuple(node for atom in items for node in atom), i


def _parse_escape(p: str, i: int) -> tuple[Node, int]:
    if i >= len(p):
        raise _Outside
    c = p[i]
    if c == "b":
        return Boundary(), i + 1
    if c in _CLASS_ESCAPES:
        return CharSet(classes=c), i + 1
    if c.isascii() and not c.isalnum():
        return Char(c), i + 1  # escaped punctuation, as re.escape writes it
    raise _Outside  # \A \Z \B, back-references, \n \uXXXX and other character codes


def _parse_set(p: str, i: int) -> tuple[Char | CharSet, int]:
    """A set after its "[" up to and past its "]"."""
    negated = p.startswith("^", i)
    i += negated
    chars, ranges, classes = [], [], []
    first = True
    while True:
        if i >= len(p) or p[i] == "[" or (p[i] == "]" and first):
            raise _Outside  # unterminated, nested-set syntax, or "]" listed first
        if p[i] == "]":
            if len(chars) == 1 and not (ranges or classes or negated):
                return Char(chars[0]), i + 1  # "[a]" is the literal "a"
            return CharSet("".join(chars), tuple(ranges), "".join(classes), negated), i + 1
        first = False
        if p[i] == "\\":
            node, i = _parse_escape(p, i + 1)
            if isinstance(node, CharSet):
                classes.append(node.classes)
                continue
            if not isinstance(node, Char):
                raise _Outside  # \b in a set means backspace
            low = node.char
        else:
            low, i = p[i], i + 1
        if p.startswith("-", i) and p.startswith("\\", i + 1):
            raise _Outside  # a range ending in an escape
        if p.startswith("-", i) and i + 1 < len(p) and p[i + 1] != "]":
            ranges.append((low, p[i + 1]))
            i += 2
        else:
            chars.append(low)


def _parse_quantifier(p: str, i: int) -> tuple[tuple[int, int | None] | None, int]:
    """(least, most) repetitions of a quantifier at i, or None if there is none."""
    if i >= len(p):
        return None, i
    if p[i] in "?*+":
        bounds: tuple[int, int | None] = {"?": (0, 1), "*": (0, None), "+": (1, None)}[p[i]]
        i += 1
    elif p[i] == "{":
        m = _QUANTIFIER_RE.match(p, i)
        if m is None:
            raise _Outside  # re would read this "{" as a literal
        if m.group(4) is not None:
            bounds = (0, int(m.group(4)))
        elif m.group(2) is None:
            bounds = (int(m.group(1)), int(m.group(1)))
        else:
            bounds = (int(m.group(1)), int(m.group(3)) if m.group(3) else None)
        i = m.end()
    else:
        return None, i
    if i < len(p) and p[i] in "?+":
        i += 1  # lazy or possessive, read as greedy: they match the same strings or fewer
    return bounds, i


# ----------------------------------------------------------------------------- literal gates

# Non-ASCII characters that a regex literal ASCII character matches under re.IGNORECASE (found by
# trying every code point; tests/test_grounding_speed.py checks it), and the ASCII they stand for.
FOLD = str.maketrans({"\u0130": "i", "\u0131": "i", "\u017f": "s", "\u212a": "k"})


def folded(text: str) -> str:
    """text lower-cased, where each character a literal ASCII pattern character can match (in any
    case) becomes that ASCII character in lower case, so a run of literals matched is a substring."""
    return text.lower() if text.isascii() else text.translate(FOLD).lower()


def _required(nodes: Iterable[Node]) -> list[frozenset[str]]:
    """Groups of strings, one of each occurring in folded(text) whenever `nodes` match somewhere in
    text. Conservative: what it does not understand requires nothing."""
    groups: list[frozenset[str]] = []
    run: list[str] = []  # consecutive literal characters: their match is a contiguous substring

    def end_run() -> None:
        if run:
            groups.append(frozenset({"".join(run)}))
            run.clear()

    for node in nodes:
        if isinstance(node, Char) and node.char.isascii():
            run.append(node.char.lower())
            continue
        end_run()
        if isinstance(node, Alternation):
            # One option matches: any of the options' best groups; none if one needs nothing.
            options = [_required(option) for option in node.options]
            if all(options):
                groups.append(frozenset().union(*(max(o, key=_selectivity) for o in options)))
        elif isinstance(node, Repeat) and node.low >= 1:
            groups.extend(_required(node.body))  # matched at least once
    end_run()
    return groups


def _selectivity(group: frozenset[str]) -> tuple[int, int]:
    return min(len(s) for s in group), -len(group)


def literal_gate(rx: re.Pattern, keep: int | None = 3) -> tuple[tuple[str, ...], ...]:
    """The `keep` (None: all) most selective groups of strings that a match of rx needs: one of each
    group occurs in folded(text) if rx matches text. () (no condition) for a pattern `parse` cannot read."""
    nodes = parse(rx.pattern, rx.flags)
    if nodes is None:
        return ()
    groups = sorted(set(_required(nodes)), key=_selectivity, reverse=True)
    return tuple(tuple(sorted(g, key=lambda s: (len(s), s))) for g in groups[:keep])


def gate_holds(gate: Sequence[Sequence[str]], folded_text: str) -> bool:
    for group in gate:
        for s in group:
            if s in folded_text:
                break
        else:
            return False
    return True


# ----------------------------------------------------------------------------- case and width


def _case_free(nodes: Iterable[Node]) -> bool:
    """Whether the nodes match lower-cased ASCII text with and without IGNORECASE alike: their
    literals (also in sets and ranges) are ASCII without capitals. (Word boundaries, \\s, \\d and \\w
    do not depend on case, and with IGNORECASE a character is compared in lower case.)"""
    for node in nodes:
        if isinstance(node, Char):
            ok = node.char.isascii() and not node.char.isupper()
        elif isinstance(node, CharSet):
            ok = all(c.isascii() and not c.isupper() for c in node.chars) and all(
                ord(high) < 128 and not any(chr(c).isupper() for c in range(ord(low), ord(high) + 1))
                for low, high in node.ranges
            )
        elif isinstance(node, Alternation):
            ok = all(_case_free(option) for option in node.options)
        elif isinstance(node, Repeat):
            ok = _case_free(node.body)
        else:
            ok = True  # Boundary
        if not ok:
            return False
    return True


def lower_case_twin(rx: re.Pattern) -> re.Pattern | None:
    """rx without IGNORECASE, which on text.lower() of an ASCII text finds the same spans as rx on
    the text (case-insensitive matching is several times slower); None where that is not sure."""
    if not rx.flags & re.IGNORECASE:
        return None  # nothing to gain
    nodes = parse(rx.pattern, rx.flags)
    if nodes is None or not _case_free(nodes):
        return None
    return re.compile(rx.pattern, rx.flags & ~re.IGNORECASE)


def _width(nodes: Iterable[Node]) -> int | None:
    total = 0
    for node in nodes:
        if isinstance(node, Alternation):
            widths = [_width(option) for option in node.options]
            width = None if None in widths else max(widths)
        elif isinstance(node, Repeat):
            body = 0 if node.high == 0 else _width(node.body)
            width = 0 if body == 0 else None if node.high is None or body is None else node.high * body
        else:
            width = 0 if isinstance(node, Boundary) else 1
        if width is None:
            return None
        total += width
    return total


def longest_match(rx: re.Pattern) -> int | None:
    """The most characters a match of rx can span; None if unbounded or not known."""
    nodes = parse(rx.pattern, rx.flags)
    return None if nodes is None else _width(nodes)
