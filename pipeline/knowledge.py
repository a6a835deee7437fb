"""The knowledge a build applies, loaded once from the config: the AU vocabulary, the emotion vocabulary,
the FE-AU prototypes, the grounding lexicon, the AU head and the mesh measures.

`Knowledge.load(config)` reads the files the params name (`au.vocabulary`, `au.head`, `au.measures`,
`synergy.prototypes`) and the packaged ones they do not (emotions, grounding lexicon, blendshape names,
alignment template). The driver loads it once and hands it to the steps, the grounding verifier, templating
and the dataset card, so what is rendered and what is verified come from the same vocabulary.

It is plain data (tuples, dicts, small numpy arrays): cheap to pickle to Beam workers. What is derived from it
there, the grounding lexicon's regexes, is built once per process on first use (`pipeline.grounding.lexicon`),
keyed by `fingerprint`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import cache, cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.au.head import AUHead, feature_names
from pipeline.au.measures import MeshMeasures
from pipeline.config import Config
from pipeline.domain.data import data_file
from pipeline.domain.vocabulary import load_au_vocabulary

if TYPE_CHECKING:
    from collections.abc import Iterable


@dataclass(frozen=True)
class Emotions:
    """The canonical emotions and the words for them (emotions.json)."""

    canonical: tuple[str, ...]
    adjectives: dict[str, str]  # anger -> angry: the adjective a person "looks", for question phrasing
    mentions: dict[str, list[str]]  # words that, in generated text, claim each emotion (grounding)
    synonyms: dict[str, str]  # a corpus' label word (lower case) -> canonical emotion

    @classmethod
    def load(cls, path: str | Path) -> Emotions:
        spec = json.loads(Path(path).read_text())
        synonyms = {syn.lower(): canon for canon, syns in spec["synonyms"].items() for syn in syns}
        return cls(tuple(spec["canonical"]), dict(spec["adjectives"]), dict(spec["mentions"]), synonyms)


@cache
def packaged_emotions() -> Emotions:
    """The packaged emotion vocabulary: the record's canonical 8 (no param changes it)."""
    return Emotions.load(data_file("emotions.json"))


@dataclass(frozen=True)
class Prototypes:
    """The FE-AU prototype table: per emotion the core AUs expected and the supporting ones that co-occur."""

    table: dict[str, dict[str, list[str]]]
    neutral_tolerance: int

    @classmethod
    def load(cls, path: str | Path) -> Prototypes:
        spec = json.loads(Path(path).read_text())
        return cls(spec["emotions"], int(spec["neutral_tolerance"]))

    def score(self, emotion: str, present: Iterable[str]) -> tuple[float, list[str]]:
        """Consistency in [0, 1] and the evidence AUs (prototype AUs that are present): (core present + 0.5 x
        supporting present) / core AUs, capped at 1; for neutral, 1 - min(1, AUs present / neutral_tolerance)."""
        present = list(present)
        proto = self.table[emotion]
        core = [au for au in proto["core"] if au in present]
        supporting = [au for au in proto["supporting"] if au in present]
        if not proto["core"]:  # neutral: evidence is the absence of activity
            return 1.0 - min(1.0, len(present) / self.neutral_tolerance), []
        value = (len(core) + 0.5 * len(supporting)) / len(proto["core"])
        return min(1.0, value), core + supporting


@dataclass(frozen=True, eq=False)
class Knowledge:
    au_vocabulary: tuple[dict[str, Any], ...]  # {code, number, name, region, muscle}, in vector order
    emotions: Emotions
    prototypes: Prototypes
    lexicon: dict[str, Any]  # grounding_lexicon.json: AU phrasings, cues, tasks that must state the emotion
    head: AUHead  # bound to the face feature vector (blendshapes, then mesh measures)
    measures: MeshMeasures
    blendshape_names: tuple[str, ...]
    alignment_template: Path
    fingerprint: str = field(default="")  # what grounding depends on; keys the per-process lexicon

    def __post_init__(self) -> None:
        if not self.fingerprint:
            what = [self.au_vocabulary, self.emotions.mentions, self.emotions.canonical, self.lexicon]
            digest = hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:16]
            object.__setattr__(self, "fingerprint", digest)

    @cached_property
    def codes(self) -> list[str]:
        """The AU codes in vector order (`au_intensity`)."""
        return [row["code"] for row in self.au_vocabulary]

    @cached_property  # read for every text verified
    def au_names(self) -> dict[str, str]:
        return {row["code"]: row["name"] for row in self.au_vocabulary}

    @classmethod
    def load(cls, config: Config) -> Knowledge:
        """Everything the params name, read and checked (an AU head that lacks a vocabulary AU or needs a
        feature the face stage does not measure fails here, before any worker starts)."""
        vocabulary = tuple(load_au_vocabulary(config.paths.au_vocabulary))
        codes = [row["code"] for row in vocabulary]
        measures = MeshMeasures.load(config.paths.au_measures)
        names = tuple(json.loads(data_file("blendshapes.json").read_text())["names"])
        head = AUHead.load(config.paths.au_head, codes).bind(feature_names(names, measures.names))
        return cls(
            au_vocabulary=vocabulary,
            emotions=packaged_emotions(),
            prototypes=Prototypes.load(config.paths.prototypes),
            lexicon=json.loads(data_file("grounding_lexicon.json").read_text()),
            head=head,
            measures=measures,
            blendshape_names=names,
            alignment_template=data_file("alignment_template.json"),
        )


@cache
def packaged() -> Knowledge:
    """The knowledge of the default params: for readers without a config (tests, validation of any build)."""
    return Knowledge.load(Config())
