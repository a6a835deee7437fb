"""FE-AU synergy: how well the detected AUs support the emotion label, by the prototype table.

Consistency (schemas/emotion_prototypes.json): (core AUs present + 0.5 x supporting present) /
number of core AUs, capped at 1; for neutral, 1 - min(1, AUs present / neutral_tolerance).
A labelled sample whose consistency is below the threshold is a conflict; policy keep | flag | reject.
Unlabelled samples get no score. Rejects: fe_au_conflict (policy reject only).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pipeline.config import SynergyConfig
from pipeline.record import Sample
from pipeline.stages.base import Stage


@dataclass
class Prototypes:
    table: dict[str, dict[str, list[str]]]
    neutral_tolerance: int

    @classmethod
    def load(cls, path: Path) -> Prototypes:
        spec = json.loads(Path(path).read_text())
        return cls(spec["emotions"], int(spec["neutral_tolerance"]))

    def score(self, emotion: str, present: list[str]) -> tuple[float, list[str]]:
        """Consistency in [0, 1] and the evidence AUs (prototype AUs that are present)."""
        proto = self.table[emotion]
        core = [au for au in proto["core"] if au in present]
        supporting = [au for au in proto["supporting"] if au in present]
        if not proto["core"]:  # neutral: evidence is the absence of activity
            return 1.0 - min(1.0, len(present) / self.neutral_tolerance), []
        value = (len(core) + 0.5 * len(supporting)) / len(proto["core"])
        return min(1.0, value), core + supporting


class SynergyStage(Stage):
    name = "synergy"
    reasons = ("fe_au_conflict",)

    def __init__(self, cfg: SynergyConfig, prototypes: Prototypes) -> None:
        super().__init__()
        self.cfg = cfg
        self.prototypes = prototypes

    def run(self, sample: Sample) -> Iterator:
        emotion = sample.item.emotion
        if emotion is None:
            yield sample
            return
        score, evidence = self.prototypes.score(emotion, sample.au_present)
        sample.fe_au_consistency = score
        sample.evidence_aus = evidence
        conflict = score < self.cfg.conflict_threshold
        if conflict and self.cfg.conflict_policy == "reject":
            yield self.reject(sample, "fe_au_conflict", f"{emotion}: consistency {score:.2f}")
            return
        sample.fe_au_conflict = conflict and self.cfg.conflict_policy == "flag"
        yield sample
