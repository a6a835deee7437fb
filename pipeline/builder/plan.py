"""The build's plan: the ordered steps a build applies, made from the config and the knowledge.

`plan(config, knowledge, scratch)` decides, in the driver and before any worker starts, all that can be
decided there: which backends find landmarks and measure AUs (`pipeline.builder.backends`), the template library
(built once, here) and whether `render.mix` names real templates, whether the LLM stage can work, and the
versions every row carries. A config that cannot work fails here with a clear error.

Two lists of steps, each in the order it runs:
- `image`: decode to synergy, per shard of inputs (`pipeline.builder.shard_steps.on_shards`), so that a build that
  stopped reruns only its unfinished shards;
- `faces`: dedup, render, the optional LLM, verify, over all faces of the build (`Step.apply`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline import __version__
from pipeline.builder.backends import Backend, au_backend, landmark_backend
from pipeline.builder.step import Step
from pipeline.config import Config, ConfigError
from pipeline.knowledge import Knowledge
from pipeline.llm.summary import BATCH_DIR, BUDGET_LEDGER
from pipeline.models.files import ModelFile
from pipeline.stages.align import AlignStage
from pipeline.stages.decode import DecodeStage
from pipeline.stages.dedup import Deduplicate
from pipeline.stages.fingerprint import FingerprintStage
from pipeline.stages.measure import MeasureStage
from pipeline.stages.render import RenderStage
from pipeline.stages.synergy import SynergyStage
from pipeline.stages.verify import VerifyStage
from pipeline.templating import TemplateLibrary

if TYPE_CHECKING:
    from pipeline.stages.llm import LLMStage


@dataclass(frozen=True)
class Plan:
    image: list[Step]
    faces: list[Step]
    landmarks: Backend
    au: Backend
    library: TemplateLibrary
    versions: dict[str, str]  # what every row and reject records: detector, AU model, templates, pipeline, params

    @property
    def models(self) -> dict[str, ModelFile]:
        """Every model file the build loads, by name."""
        return {**self.landmarks.models, **self.au.models}


def plan(config: Config, knowledge: Knowledge, scratch: Path) -> Plan:
    """The steps of a build of `config` with `knowledge`; `scratch` is the driver's folder for the LLM stage's
    token ledger and Batch-API requests (`pipeline.llm.summary`)."""
    landmarks = landmark_backend(config, knowledge)
    au = au_backend(config, knowledge, landmarks)
    library = TemplateLibrary(config.paths.templates_dir, knowledge)
    check_llm(config, library.tasks)
    image = [Step("Decode", DecodeStage(config.decode)), *landmarks.steps]
    if config.dedup.enabled:  # from the source pixels, which align drops
        image.append(Step("Fingerprint", FingerprintStage(config.dedup)))
    image += [Step("Align", AlignStage(config.align, knowledge.alignment_template)),
              Step("Measure", MeasureStage(knowledge.measures)), *au.steps,
              Step("Synergy", SynergyStage(config.synergy, knowledge.prototypes))]
    check_fields(image)
    faces = [Step("Dedup", Deduplicate(config.dedup, [s.name for s in config.sources]))] if config.dedup.enabled else []
    faces.append(Step("Render", RenderStage(config.render, library)))  # checks render.mix against the library
    if config.llm.enabled:
        faces.append(Step("LLM", llm_stage(config, knowledge, scratch), batch_size=config.llm.batch_size))
    faces.append(Step("Verify", VerifyStage(knowledge)))
    versions = {"detector": landmarks.version, "au_model": au.version, "templates_version": library.version,
                "pipeline_version": __version__, "params_hash": config.params_hash()}
    return Plan(image, faces, landmarks, au, library, versions)


def check_fields(steps: list[Step]) -> None:
    """Each image step reads only `Sample` fields an earlier step wrote and none that one dropped (the stages'
    declared contracts, pipeline.stages.base.Stage); otherwise a ConfigError naming the step and the field."""
    written: dict[str, str] = {"item": "the source"}
    dropped: dict[str, str] = {}
    for step in steps:
        stage = step.stage
        for field in sorted(getattr(stage, "reads", ())):
            if field in dropped:
                raise ConfigError(f"step {step.label} reads {field}, which step {dropped[field]} drops before it: "
                                  "the steps are out of order")
            if field not in written:
                raise ConfigError(f"step {step.label} reads {field}, which no earlier step writes: "
                                  "the steps are out of order or one is missing")
        for field in getattr(stage, "writes", ()):
            written[field] = step.label
            dropped.pop(field, None)
        for field in getattr(stage, "drops", ()):
            dropped[field] = step.label
            written.pop(field, None)


def check_llm(config: Config, template_tasks: list[str]) -> None:
    """Fail before any worker starts when the LLM stage cannot work: unknown tasks, a broken prompt
    file, or (online) no API key in the environment variable named by llm.api_key_env."""
    llm = config.llm
    if not llm.enabled:
        return
    from pipeline.llm.prompts import PromptBook  # the LLM modules (openai) load only when the stage is on

    PromptBook(config.paths.llm_prompts)
    unknown = sorted(set(llm.tasks) - set(template_tasks))
    if unknown:
        raise ConfigError(f"llm.tasks names tasks without templates: {unknown}")
    if llm.mode == "online" and not os.environ.get(llm.api_key_env):
        raise ConfigError(f"llm.enabled is true but the environment variable {llm.api_key_env} (llm.api_key_env) "
                          "is not set; export the API key there (any non-empty value for a local server)")


def llm_stage(config: Config, knowledge: Knowledge, scratch: Path) -> LLMStage:
    from pipeline.stages.llm import LLMStage  # the LLM modules (openai) load only when the stage is on

    llm = config.llm
    # Each worker process gets its share, so all workers together never exceed llm.max_concurrency.
    workers = config.runner.num_workers if config.runner.runner == "DirectRunner" else 1
    return LLMStage(
        llm, knowledge, str(config.paths.llm_prompts), str(config.paths.llm_cache_dir),
        str(scratch / BUDGET_LEDGER), str(scratch / BATCH_DIR),
        concurrency=max(1, llm.max_concurrency // max(1, workers)),
    )
