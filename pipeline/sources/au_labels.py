"""Corpus FACS annotations -> SourceItem.au_labels: one AU numbering, one 0-5 scale (corpus_au.json).

Corpora write AUs as "1", "01", "AU01", "au1" or with a laterality/region prefix ("L12", "R2", "B25", "T4"
in RAF-AU): all become the vocabulary spelling "AU12" (laterality is not kept: the record codes the face).
The numbering is FACS', so a corpus code maps to the vocabulary AU with the same number; codes the
vocabulary lacks stay on the SourceItem and are left out of the record by the AU stage (pipeline/stages/au.py).
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path

from pipeline.domain.data import data_file
from pipeline.sources.base import SourceError

CORPUS_AU_FILE = data_file("corpus_au.json")
INTENSITY_MAX = 5.0
_CODE = re.compile(r"^(?:[LRBT](?=\d))?(?:AU)?0*(?P<number>\d+)$", re.IGNORECASE)


def au_code(raw: str) -> str:
    """'1', '01', 'AU01', 'L12' -> 'AU1', 'AU12'; ValueError for anything that is not an AU number."""
    text = raw.strip()
    if text.endswith(".0"):  # CK+ writes AU numbers as floats ("1.0000000e+00" is handled by the caller)
        text = text[:-2]
    match = _CODE.match(text)
    if match is None or int(match["number"]) == 0:
        raise ValueError(f"not an AU code: {raw!r}")
    return f"AU{int(match['number'])}"


@cache
def _table() -> dict:
    return json.loads(CORPUS_AU_FILE.read_text())


def occurrence_intensity() -> float:
    """The 0-5 value given to an AU a corpus codes as present without an intensity (FACS level C)."""
    return float(_table()["occurrence_intensity"])


def annotated_aus(corpus: str) -> list[str] | None:
    """The AUs a corpus codes (None = full FACS coding: every AU)."""
    spec = _table()["corpora"].get(corpus)
    if spec is None:
        raise SourceError(f"{CORPUS_AU_FILE.name} has no entry for {corpus!r}")
    return None if spec.get("full_facs") else list(spec["annotated"])


def intensity(raw: str | float) -> float:
    """A corpus intensity on the 0-5 scale; ValueError outside it."""
    value = float(raw)
    if not 0.0 <= value <= INTENSITY_MAX:
        raise ValueError(f"intensity {raw!r} outside 0-5")
    return value


def read_frame_file(path: Path, unknown: frozenset[float] = frozenset()) -> tuple[dict[int, float], list[str]]:
    """A per-frame AU file ("frame,intensity" lines: DISFA, BP4D AU_INT) -> ({frame: 0-5}, [problems]).

    Values in `unknown` (BP4D's 9 = not coded) leave the frame out: the AU is unknown there, not absent.
    A malformed line is reported as "file:line: why", never dropped silently.
    """
    values: dict[int, float] = {}
    problems: list[str] = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        parts = [p.strip() for p in line.replace(";", ",").split(",")]
        try:
            if len(parts) != 2:
                raise ValueError("expected 'frame,intensity'")
            frame = int(parts[0])
            if float(parts[1]) in unknown:
                continue
            values[frame] = intensity(parts[1])
        except ValueError as exc:
            problems.append(f"{path.name}:{number}: {line.strip()[:80]!r}: {exc}")
    return values, problems


_LIST_SEPARATORS = re.compile(r"[+,;\s]+")
_LEVELS = {"A": 1.0, "B": 2.0, "C": 3.0, "D": 4.0, "E": 5.0}
_CODED_NONE = {"0", "none", "-"}


def parse_au_list(text: str) -> dict[str, float] | None:
    """A cell listing the AUs a face shows, FACS-style -> {code: 0-5 intensity}; None for an empty cell.

    '1+2+12', 'AU1,AU2', '1B+2C+12D' (FACS intensity letters A-E = 1-5), '12:4' (a 0-5 value) and
    laterality prefixes ('L12') are understood; an AU without intensity gets the occurrence value of
    corpus_au.json. '0', 'none' or '-' mean coded with no AU present; an empty cell means not
    coded. ValueError (with the token) for anything else.
    """
    cell = (text or "").strip()
    if not cell:
        return None
    if cell.lower() in _CODED_NONE:
        return {}
    labels: dict[str, float] = {}
    for token in filter(None, _LIST_SEPARATORS.split(cell)):
        code, _, value = token.partition(":")
        level = None
        if not value and len(code) > 1 and code[-1].upper() in _LEVELS and code[-2].isdigit():
            code, level = code[:-1], _LEVELS[code[-1].upper()]
        try:
            name = au_code(code)
            if value:
                level = intensity(value)
        except ValueError as exc:
            raise ValueError(f"{token!r}: {exc}") from None
        labels[name] = occurrence_intensity() if level is None else level
    return labels


def annotated_option(options: dict) -> list[str] | None:
    """The `au_annotated` adapter option ('1,2,4' or a list): the AUs a corpus codes; None = every AU (full FACS)."""
    raw = options.get("au_annotated")
    if raw in (None, ""):
        return None
    tokens = raw if isinstance(raw, list) else _LIST_SEPARATORS.split(str(raw))
    try:
        return sorted({au_code(str(t)) for t in tokens if str(t).strip()}, key=lambda c: int(c[2:]))
    except ValueError as exc:
        raise SourceError(f"option au_annotated: {exc}") from None
