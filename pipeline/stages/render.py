"""Render: one face -> `tasks_per_face` instruction conversations from the template library.

Tasks are drawn from `render.mix` by weighted sampling without replacement, seeded by
(seed, face_id), among the tasks whose `requires` the face meets ("emotion": the item has a label;
"aus": AUs were measured; "conflict": the label and the AUs disagree). Each task gets its own
context: the question subjects (multiple-choice options, yes/no probes) and the phrasing are picked
from (seed, face_id, task).
A rebuild with the same seed is identical; a new seed gives a new mix.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator
from typing import Any

from pipeline.config import RenderConfig
from pipeline.domain.record import Instruction, Sample
from pipeline.stages.base import Stage
from pipeline.templating import TemplateLibrary, build_context


def requirements_met(requires: tuple[str, ...] | list[str], sample: Sample) -> bool:
    """Whether a face has what a task needs: a label for "emotion", measured AUs for "aus", an FE-AU
    conflict flagged by the synergy stage for "conflict"."""
    have = {
        "emotion": sample.item.emotion is not None,
        "aus": sample.au_intensity is not None,
        "conflict": bool(sample.fe_au_conflict),
    }
    return all(have[r] for r in requires)


def choose_tasks(weights: dict[str, float], k: int, seed_key: str) -> list[str]:
    """`k` distinct tasks by weighted sampling without replacement, deterministic from `seed_key`."""
    rng = random.Random(int(hashlib.sha256(seed_key.encode()).hexdigest()[:16], 16))
    pool = {task: w for task, w in sorted(weights.items()) if w > 0}
    chosen: list[str] = []
    while pool and len(chosen) < k:
        tasks = list(pool)
        task = rng.choices(tasks, weights=[pool[t] for t in tasks])[0]
        chosen.append(task)
        del pool[task]
    return chosen


class RenderStage(Stage):
    """Renders with `library` (built once, by the plan) in the vocabulary, emotions and prototypes of its
    knowledge. A `render.mix` naming a task without templates fails here, where the plan is made."""

    name = "render"
    reasons = ("no_renderable_task",)

    def __init__(self, render_cfg: RenderConfig, library: TemplateLibrary) -> None:
        super().__init__()
        library.check_mix(render_cfg.mix)
        self.cfg = render_cfg
        self.library = library

    def run(self, sample: Sample) -> Iterator[Any]:
        library = self.library
        possible = {
            task: w for task, w in self.cfg.mix.items() if requirements_met(library.requires(task), sample)
        }
        tasks = choose_tasks(possible, self.cfg.tasks_per_face, f"{self.cfg.seed}|{sample.face_id}")
        if not tasks:
            needs = {t: list(library.requires(t)) for t, w in self.cfg.mix.items() if w > 0}
            yield self.reject(
                sample,
                "no_renderable_task",
                f"emotion={sample.item.emotion!r}, aus_measured={sample.au_intensity is not None}; "
                f"mix tasks need {needs}",
            )
            return
        for task in tasks:
            key = f"{self.cfg.seed}|{sample.face_id}|{task}"
            context = build_context(sample, library.knowledge, key)
            template_id, conversations = library.render(task, context, key)
            yield Instruction(sample, task, template_id, conversations)
