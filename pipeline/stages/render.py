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
from pathlib import Path
from typing import Any

from pipeline.config import PROJECT_ROOT, RenderConfig
from pipeline.record import Instruction, Sample
from pipeline.stages.base import Stage
from pipeline.stages.synergy import Prototypes
from pipeline.templating import TemplateLibrary, build_context
from pipeline.vocabulary import load_au_vocabulary


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
    name = "render"
    reasons = ("no_renderable_task",)

    def __init__(
        self,
        render_cfg: RenderConfig,
        templates_dir: str | Path,
        vocabulary_path: str | Path,
        prototypes_path: str | Path = PROJECT_ROOT / "schemas" / "emotion_prototypes.json",
    ) -> None:
        super().__init__()
        self.cfg = render_cfg
        self.templates_dir = str(templates_dir)
        self.vocabulary_path = str(vocabulary_path)
        self.prototypes_path = str(prototypes_path)
        self._library: TemplateLibrary | None = None
        self._vocabulary: list[dict[str, Any]] = []
        self._prototypes: dict[str, dict[str, list[str]]] = {}

    def setup(self) -> None:
        library = TemplateLibrary(self.templates_dir)
        unknown = sorted(set(self.cfg.mix) - set(library.tasks))
        if unknown:
            raise ValueError(f"render.mix names tasks without templates: {unknown}; have {library.tasks}")
        self._vocabulary = load_au_vocabulary(self.vocabulary_path)
        self._prototypes = Prototypes.load(Path(self.prototypes_path)).table
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
        for task in tasks:
            key = f"{self.cfg.seed}|{sample.face_id}|{task}"
            context = build_context(sample, self._vocabulary, self._prototypes, key)
            template_id, conversations = library.render(task, context, key)
            yield Instruction(sample, task, template_id, conversations)
