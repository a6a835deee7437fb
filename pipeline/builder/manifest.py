"""The manifest of a build: what its plan and knowledge say about it (versions, model files, the AU vocabulary
and the meaning of its 0-5 scale, the AU head, the face features, the params), with the figures of its run."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from pipeline.builder.plan import Plan
from pipeline.config import Config
from pipeline.domain.record import SourceItem
from pipeline.io.manifest import Counts, Manifest
from pipeline.io.schema import schema_version
from pipeline.knowledge import Knowledge


def build_manifest(config: Config, knowledge: Knowledge, plan: Plan, items: list[SourceItem],
                   counts: dict[str, Any], **run: Any) -> Manifest:
    """The manifest; `counts` are those read back from the written files (`pipeline.io.accounting.summarize`),
    `run` the run's own figures (stage_counters, llm, splits, resume, timings, shards, reject_files)."""
    labelled = Counter(item.emotion for item in items if item.emotion)
    return Manifest(
        schema_version=schema_version("record"),
        created_unix=int(time.time()),
        sources=[s.model_dump(mode="json") for s in config.sources],
        counts=Counts(**counts, labelled_inputs_by_emotion=dict(sorted(labelled.items()))),
        versions=plan.versions,
        models={name: {"path": f.path.name, "sha256": f.sha256} for name, f in plan.models.items()},
        au_vocabulary=knowledge.codes,
        au_intensity_scale=plan.au.intensity_scale,
        au_head=plan.au.head,
        blendshape_names=list(knowledge.blendshape_names),
        face_measure_names=knowledge.measures.names,
        face_measures_version=knowledge.measures.version,
        au_not_measured=plan.au.not_measured,
        crop_size=config.align.crop_size,
        params=config.model_dump(mode="json", by_alias=True, exclude={"base_dir"}),
        **run,
    )
