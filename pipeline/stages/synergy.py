"""FE-AU synergy: how well the detected AUs support the emotion label, by the prototype table.

Consistency (the knowledge's prototype table, `synergy.prototypes`): (core AUs present + 0.5 x supporting present) /
number of core AUs, capped at 1; for neutral, 1 - min(1, AUs present / neutral_tolerance).
A labelled sample whose consistency is below the threshold is a conflict; policy keep | flag | reject.
Unlabelled samples get no score. Rejects: fe_au_conflict (policy reject only).
"""

from __future__ import annotations

from collections.abc import Iterator

from pipeline.config import SynergyConfig
from pipeline.domain.record import Sample
from pipeline.knowledge import Prototypes
from pipeline.stages.base import Stage


class SynergyStage(Stage):
    name = "synergy"
    reasons = ("fe_au_conflict",)
    reads = frozenset({"item", "au_present"})
    writes = frozenset({"fe_au_consistency", "evidence_aus", "fe_au_conflict"})

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
