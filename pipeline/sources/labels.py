"""Corpus label harmonisation: any corpus' emotion words -> the canonical 8 (schemas/emotions.json)."""

from __future__ import annotations

import json
from functools import cache

from pipeline.config import PROJECT_ROOT
from pipeline.sources.base import SourceError

EMOTIONS_FILE = PROJECT_ROOT / "schemas" / "emotions.json"


@cache
def _emotions() -> dict:
    return json.loads(EMOTIONS_FILE.read_text())


def emotion_mentions() -> dict[str, list[str]]:
    """Words that, in generated text, claim each canonical emotion (for the grounding check)."""
    return dict(_emotions()["mentions"])


def emotion_adjectives() -> dict[str, str]:
    """Canonical emotion -> the adjective a person "looks" (anger -> angry), for question phrasing."""
    return dict(_emotions()["adjectives"])


def canonical_emotions() -> list[str]:
    return list(_emotions()["canonical"])


@cache
def _synonym_table() -> dict[str, str]:
    return {syn.lower(): canon for canon, syns in _emotions()["synonyms"].items() for syn in syns}


def canonical_emotion(raw: str, extra: dict[str, str] | None = None) -> str | None:
    """The canonical emotion for a corpus label, or None if the label is unknown."""
    key = raw.strip().lower()
    if extra and key in {k.lower() for k in extra}:
        mapped = {k.lower(): v for k, v in extra.items()}[key]
        return mapped if mapped in canonical_emotions() else None
    return _synonym_table().get(key)


CORPUS_LABELS_FILE = PROJECT_ROOT / "schemas" / "corpus_labels.json"


@cache
def corpus_label_map(corpus: str) -> dict[str, str | None]:
    """A corpus' expression code -> canonical emotion; None marks the corpus' own 'no emotion' codes."""
    table = json.loads(CORPUS_LABELS_FILE.read_text())
    if corpus not in table or corpus.startswith("_"):
        raise SourceError(f"{CORPUS_LABELS_FILE.name} has no label map for {corpus!r}")
    return dict(table[corpus])
