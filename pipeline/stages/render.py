"""Render: one face -> `tasks_per_face` instruction conversations from the template library.

Tasks are drawn from `render.mix` by weighted sampling without replacement, seeded by
(seed, face_id), among the tasks whose `requires` the face meets ("emotion": the item has a label;
"aus": AUs were measured). The phrasing of each is picked by the library from (seed, face_id, task).
A rebuild with the same seed is identical; a new seed gives a new mix.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pipeline.config import RenderConfig
from pipeline.record import Instruction, Sample
from pipeline.stages.base import Stage
from pipeline.templating import TemplateLibrary, build_context
from pipeline.vocabulary import load_au_vocabulary


def requirements_met(requires: tuple[str, ...] | list[str], sample: Sample) -> bool:
    """Whether a face has what a task needs: a label for "emotion", measured AUs for "aus"."""
    have = {"emotion": sample.item.emotion is not None, "aus": sample.au_intensity is not None}
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
    name = "render"
    reasons = ("no_renderable_task",)

    def __init__(
        self, render_cfg: RenderConfig, templates_dir: str | Path, vocabulary_path: str | Path
    ) -> None:
        super().__init__()
        self.cfg = render_cfg
        self.templates_dir = str(templates_dir)
        self.vocabulary_path = str(vocabulary_path)
        self._library: TemplateLibrary | None = None
        self._vocabulary: list[dict[str, Any]] = []

    def setup(self) -> None:
        library = TemplateLibrary(self.templates_dir)
        unknown = sorted(set(self.cfg.mix) - set(library.tasks))
        if unknown:
            raise ValueError(f"render.mix names tasks without templates: {unknown}; have {library.tasks}")
        self._vocabulary = load_au_vocabulary(self.vocabulary_path)
        self._library = library

    def run(self, sample: Sample) -> Iterator[Any]:
        # No lazy property here: Beam inspects DoFn attributes at pickling time and would load it early.
        if self._library is None:
            self.setup()
        library = self._library
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
        context = build_context(sample, self._vocabulary)
        for task in tasks:
            template_id, conversations = library.render(
                task, context, f"{self.cfg.seed}|{sample.face_id}|{task}"
            )
            yield Instruction(sample, task, template_id, conversations)
