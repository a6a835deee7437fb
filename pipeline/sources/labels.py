"""Corpus label harmonisation: any corpus' emotion words or codes -> the canonical 8 of the emotion vocabulary
(`pipeline.knowledge.Emotions`)."""

from __future__ import annotations

import json
from functools import cache

from pipeline.domain.data import data_file
from pipeline.knowledge import packaged_emotions
from pipeline.sources.base import SourceError

CORPUS_LABELS_FILE = data_file("corpus_labels.json")


def canonical_emotion(raw: str, extra: dict[str, str] | None = None) -> str | None:
    """The canonical emotion for a corpus label, or None if the label is unknown."""
    emotions = packaged_emotions()
    key = raw.strip().lower()
    if extra and key in {k.lower() for k in extra}:
        mapped = {k.lower(): v for k, v in extra.items()}[key]
        return mapped if mapped in emotions.canonical else None
    return emotions.synonyms.get(key)


@cache
def corpus_label_map(corpus: str) -> dict[str, str | None]:
    """A corpus' expression code -> canonical emotion; None marks the corpus' own 'no emotion' codes."""
    table = json.loads(CORPUS_LABELS_FILE.read_text())
    if corpus not in table or corpus.startswith("_"):
        raise SourceError(f"{CORPUS_LABELS_FILE.name} has no label map for {corpus!r}")
    return dict(table[corpus])
