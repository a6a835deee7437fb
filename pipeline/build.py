"""The Beam pipeline: sources -> stages -> Parquet, rejects and manifest. Wiring only.

A build writes into `<out>.partial` (a folder, or a prefix on object storage) and is published to
`<out>` only once its manifest adds up and it passed validation, so a reader never sees a half-written
build (`pipeline.io.publish`). Its image work runs in shards that leave completion markers, so a build
that stopped reruns only its unfinished shards (`pipeline.io.shards`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import apache_beam as beam
from apache_beam.io.parquetio import WriteToParquet
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.portability.fn_api_runner import fn_runner
from apache_beam.transforms import environments

from pipeline import __version__, beam_worker
from pipeline.au.head import INTENSITY_SCALE, AUHead, feature_names
from pipeline.au.measures import MeshMeasures
from pipeline.config import Config, ConfigError, OutputConfig
from pipeline.errors import LLMStopped, PipelineFailed
from pipeline.io.build_dir import BuildDir
from pipeline.io.manifest import Counts, Manifest, Resume, summarize
from pipeline.io.publish import clear_for_rerun, publish, staging_for
from pipeline.io.rows import ToRows, reject_row
from pipeline.io.schema import arrow_schema, schema_version
from pipeline.io.shards import ShardStore, plan_shards
from pipeline.io.storage import make_dirs
from pipeline.models.files import ModelFile, resolve_model, resolve_weights
from pipeline.progress import ProgressDisplay
from pipeline.record import Reject, SourceItem
from pipeline.release import write_dataset_card
from pipeline.shard_steps import LoadShard, OnShard, ReadShard, SaveShard
from pipeline.sources import make_source
from pipeline.splits import unit_hash
from pipeline.stages.align import AlignStage
from pipeline.stages.au import AUStage
from pipeline.stages.au_pyfeat import PyFeatAUMapping, PyFeatAUStage
from pipeline.stages.base import REJECTS, describe
from pipeline.stages.blendshapes_torch import TorchBlendshapesStage
from pipeline.stages.decode import DecodeStage
from pipeline.stages.dedup import Deduplicate
from pipeline.stages.detect import DetectStage
from pipeline.stages.fingerprint import FingerprintStage
from pipeline.stages.landmarks_fan import FanLandmarksStage
from pipeline.stages.measure import MeasureStage
from pipeline.stages.render import RenderStage
from pipeline.stages.synergy import Prototypes, SynergyStage
from pipeline.stages.verify import VerifyStage
from pipeline.templating import TemplateLibrary
from pipeline.validate import validate_build
from pipeline.vocabulary import load_au_vocabulary
from pipeline.warm_process import WarmProcess, suite_process

log = logging.getLogger(__name__)


@dataclass
class BuildResult:
    out_dir: Path  # a local Path, or a UPath for an object-storage URL
    manifest: Manifest
    seconds: float
    validation: Any = None  # pipeline.validate.ValidationReport when the build was validated


class ValidationFailed(RuntimeError):
    """The build ran but failed validation; it stays in `<out>.partial` and is not published."""

    def __init__(self, staging: Path, report: Any) -> None:
        super().__init__(f"validation failed ({', '.join(report.failed[:5])}); build left in {staging}")
        self.staging = staging
        self.report = report


def enumerate_inputs(config: Config) -> tuple[list[SourceItem], list[Reject]]:
    """List every input of every source (applying per-source weights and limits) and the entries
    refused on reading."""
    items: list[SourceItem] = []
    rejects: list[Reject] = []
    for source_cfg in config.sources:
        taken = 0
        for entry in make_source(source_cfg, config).checked_items():
            if source_cfg.weight < 1.0 and not sampled(entry, source_cfg.weight, config.split.seed):
                continue
            if source_cfg.limit is not None and taken >= source_cfg.limit:
                break
            taken += 1
            (rejects if isinstance(entry, Reject) else items).append(entry)
    return items, rejects


def sampled(entry: SourceItem | Reject, weight: float, seed: int) -> bool:
    """Keep an entry with probability `weight`, decided by a seeded hash of its id (same on every run).
    Frames of one video share the video's decision."""
    return unit_hash(f"{seed}|{entry.source}|{entry.source_item}") < weight


def pipeline_options(config: Config) -> PipelineOptions:
    runner = config.runner
    args = [f"--runner={runner.runner}", "--default_sdk_harness_log_level=ERROR", *runner.extra_options]
    if runner.runner == "DirectRunner":
        # Read by the FnApiRunner that pipeline_runner() builds in place of the DirectRunner's own choice.
        args += [f"--direct_running_mode={runner.direct_running_mode}",
                 f"--direct_num_workers={runner.num_workers}"]
    return PipelineOptions(args)


def pipeline_runner(config: Config, options: PipelineOptions):
    """The runner object for `beam.Pipeline(runner=...)`; None lets Beam resolve `--runner` itself.

    For the DirectRunner this is Beam's FnApiRunner, built as the DirectRunner builds it. Left to
    itself, the DirectRunner first tries Prism, a binary it downloads at run time: offline that attempt
    costs ~0.4 s and falls back; online the build would run on Prism, which ignores
    `direct_running_mode` and the worker pinning."""
    if config.runner.runner != "DirectRunner":
        return None
    from apache_beam.portability.api import beam_provision_api_pb2
    from apache_beam.runners.portability.portable_runner import JobServiceHandle

    encoded = JobServiceHandle.encode_pipeline_options(options.get_all_options())
    provision = fn_runner.ExtendedProvisionInfo(beam_provision_api_pb2.ProvisionInfo(pipeline_options=encoded))
    return QuietWorkersRunner(provision_info=provision)


class QuietWorkersRunner(fn_runner.FnApiRunner):
    """Beam's FnApiRunner whose worker processes start with `pipeline.beam_worker` (Beam's harness with
    quiet start-up logs) instead of Beam's own `sdk_worker_main`. FnApiRunner.run_pipeline() sets the
    worker environment from `direct_running_mode`, so the command is swapped where that attribute is set."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "_default_environment" and isinstance(value, environments.SubprocessSDKEnvironment):
            value = environments.SubprocessSDKEnvironment.from_command_string(beam_worker.command())
        super().__setattr__(name, value)


def parquet_writer(prefix: Path, schema, output: OutputConfig) -> WriteToParquet:
    """Beam's Parquet sink with the build's naming (`<prefix>-00000-of-00002.parquet`) and codec. Beam's
    default buffers 64 MB per writer before it writes a row group; `output.row_group_mb` bounds that, so a
    worker's memory stays flat whatever the size of the build."""
    return WriteToParquet(
        str(prefix), schema, codec="none" if output.compression == "none" else output.compression,
        file_name_suffix=".parquet", shard_name_template="-SSSSS-of-NNNNN",
        row_group_buffer_size=int(output.row_group_mb * 2**20), record_batch_size=64,
    )


def worker_owns_process(config: Config) -> bool:
    """Whether each worker is a process of its own (multi_processing, or any runner but the DirectRunner),
    rather than a thread of a process that others (or the caller) share."""
    runner = config.runner
    return runner.runner != "DirectRunner" or runner.direct_running_mode == "multi_processing"


def pin_scope(config: Config) -> str | None:
    """How the face model is pinned to a core (runner.pin_cpus): the whole worker when each worker is a
    process of its own, else only the thread that runs it (several landmarkers share one process)."""
    if not config.runner.pin_cpus:
        return None
    return "process" if worker_owns_process(config) else "thread"


def _then(pcoll, label: str, stage, rejects: list):
    result = pcoll | label >> beam.ParDo(stage).with_outputs(REJECTS, main="ok")
    rejects.append(result[REJECTS])
    return result.ok


def build(config: Config, progress: bool = True, validate: bool = True,
          suite_executor: WarmProcess | None = None) -> BuildResult:
    """Run the pipeline, check the accounting, validate (unless told not to) and publish.

    Great Expectations loads in a helper process while the pipeline runs, then runs the suite there in
    parallel with the project checks (`pipeline.warm_process.suite_process`). A caller that has started
    that helper already (`fea build` does, before its own imports) passes it as `suite_executor`."""
    with contextlib.ExitStack() as stack:
        if validate and suite_executor is None:
            suite_executor = stack.enter_context(suite_process())
        return _build(config, progress, validate, suite_executor if validate else None)


def _build(config: Config, progress: bool, validate: bool, suite_executor: WarmProcess | None) -> BuildResult:
    started = time.monotonic()
    target = BuildDir(config.resolve_output(config.output.dir))
    staging = BuildDir(staging_for(target.root))
    if target.root.exists() and not config.output.overwrite:
        raise FileExistsError(f"{target} exists and output.overwrite is false")
    # Everything that can fail for a whole-run reason fails here, before any worker starts.
    items, read_rejects = enumerate_inputs(config)
    library = TemplateLibrary(config.resolve_input(config.render.templates_dir))
    landmarker_file = resolve_model("face_landmarker", config.detect.model_path)
    codes = [row["code"] for row in load_au_vocabulary(config.resolve_input(config.au.vocabulary))]
    measures = MeshMeasures.load(config.resolve_input(config.au.measures))
    blendshape_names = json.loads(config.resolve_input("schemas/blendshapes.json").read_text())["names"]
    head = AUHead.load(config.resolve_input(config.au.head), codes).bind(
        feature_names(blendshape_names, measures.names))
    prototypes = Prototypes.load(config.resolve_input(config.synergy.prototypes))
    check_llm(config, library.tasks)
    detector_version = f"mediapipe-face-landmarker@{landmarker_file.sha256[:12]}"
    models: dict[str, ModelFile] = {"face_landmarker": landmarker_file}
    if config.detect.landmarks == "face-alignment":
        models["fan_2d"] = resolve_weights("fan_2d", config.detect.fan_weights)
        detector_version += f"+fan-2d@{models['fan_2d'].sha256[:12]}"
    blendshape_model = (detector_version if config.au.backend == "mediapipe"
                        else f"torch-blendshapes@{landmarker_file.sha256[:12]}")
    au_model = f"{blendshape_model}+{head.tag}"
    pyfeat_mapping = None
    if config.au.backend == "pyfeat":
        from pipeline.models.pyfeat_au import MODEL_NAME, pyfeat_version

        models[MODEL_NAME] = resolve_weights(MODEL_NAME, config.au.pyfeat_weights)
        pyfeat_mapping = PyFeatAUMapping.load(config.resolve_input(config.au.pyfeat_mapping),
                                              config.resolve_input(config.au.vocabulary))
        au_model = f"pyfeat-xgb@{pyfeat_version()}+{models[MODEL_NAME].sha256[:12]}+{pyfeat_mapping.version}"
    versions = {
        "detector": detector_version,
        "au_model": au_model,
        "templates_version": library.version,
        "pipeline_version": __version__,
        "params_hash": config.params_hash(),
    }
    splits = sorted(set(config.split.ratios) | {i.split for i in items if i.split})

    # The image work in shards; those an interrupted run of the same params and inputs finished are reused.
    clear_for_rerun(staging, keep_work=config.runner.resume)
    make_dirs(staging.work_dir)
    store = ShardStore(str(staging.work_dir))
    shards = plan_shards(items, config.runner.shard_size, json.dumps(versions, sort_keys=True))
    reused = store.finished([shard for shard, _ in shards]) if config.runner.resume else []
    todo = [shard for shard, _ in shards if shard not in set(reused)]
    for shard, part in shards:
        if shard in todo:
            store.write_inputs(shard, part)
    log.info("build: %d inputs (%d refused on reading) from %d source(s)",
             len(items) + len(read_rejects), len(read_rejects), len(config.sources))
    if reused:
        log.warning("build: resuming %s: %d of %d shards (%d inputs) reused from the interrupted run", target,
                    len(reused), len(shards), sum(s.size for s in reused))

    record_schema = arrow_schema("record")
    scratch = Path(tempfile.mkdtemp(prefix="fea-build-"))  # this machine's own files: progress, LLM ledger
    stage_rejects: list = []
    options = pipeline_options(config)
    p = beam.Pipeline(runner=pipeline_runner(config, options), options=options)
    work = (
        p
        | "Shards" >> beam.Create(todo, reshuffle=False)
        | "Distribute" >> beam.Reshuffle()  # shards, not items, cross between workers: nothing is re-encoded
        | "LoadShard" >> beam.ParDo(LoadShard(store))
    )
    for label, step in image_steps(config, landmarker_file, models, measures, head, blendshape_model,
                                   pyfeat_mapping, prototypes, str(scratch / "progress")):
        work = work | label >> step
    fresh = work | "SaveShard" >> beam.ParDo(SaveShard(store)).with_outputs(REJECTS, main="ok")
    again = (p
             | "FinishedShards" >> beam.Create(reused, reshuffle=False)
             | "ReadShard" >> beam.ParDo(ReadShard(store)).with_outputs(REJECTS, main="ok"))
    stage_rejects += [fresh[REJECTS], again[REJECTS]]
    samples = (fresh.ok, again.ok) | "Faces" >> beam.Flatten()
    if config.dedup.enabled:
        deduped = samples | "Dedup" >> Deduplicate(config.dedup, [s.name for s in config.sources])
        stage_rejects.append(deduped[REJECTS])
        samples = deduped.ok
    instructions = _then(
        samples, "Render",
        RenderStage(config.render, config.resolve_input(config.render.templates_dir),
                    config.resolve_input(config.au.vocabulary), config.resolve_input(config.synergy.prototypes)),
        stage_rejects,
    )
    if config.llm.enabled:
        instructions = (instructions
                        | "BatchForLLM" >> beam.BatchElements(min_batch_size=1, max_batch_size=config.llm.batch_size)
                        | "LLM" >> beam.ParDo(llm_stage(config, scratch)))
    instructions = _then(instructions, "Verify", VerifyStage(), stage_rejects)
    rows = instructions | "ToRows" >> beam.ParDo(ToRows(config.split, versions))
    by_split = rows | "BySplit" >> beam.Partition(lambda row, _n: splits.index(row["split"]), len(splits))
    for name, part in zip(splits, by_split, strict=True):
        part | f"Write[{name}]" >> parquet_writer(staging.data_dir / name, record_schema, config.output)
    (
        [p | "ReadRejects" >> beam.Create(read_rejects, reshuffle=False), *stage_rejects]
        | "AllRejects" >> beam.Flatten()
        | "RejectRows" >> beam.Map(reject_row, versions)
        | "WriteRejects" >> parquet_writer(staging.rejects_dir / "rejects", arrow_schema("reject"), config.output)
    )
    pipeline_started = time.monotonic()
    try:
        with ProgressDisplay(scratch / "progress", total=sum(s.size for s in todo), enabled=progress):
            try:
                result = p.run()
                result.wait_until_finish()
            except Exception as exc:
                # Beam re-raises a worker's exception wrapped in its own; say plainly why the build stopped.
                if LLMStopped.__name__ in str(exc):
                    cache_dir = config.resolve_output(config.llm.cache_dir)
                    raise LLMStopped(f"build stopped: the LLM endpoint failed and llm.on_error is 'stop'; "
                                     f"responses received so far are cached in {cache_dir}") from exc
                raise PipelineFailed(f"the pipeline failed ({describe(exc)[:500]}); nothing was published"
                                     + (f", {target} is unchanged" if target.root.exists() else "")
                                     + f"; partial output left in {staging} (a rerun reuses its finished shards)"
                                     ) from exc
        pipeline_seconds = time.monotonic() - pipeline_started
        input_keys = [(i.source, i.source_item, i.frame_index) for i in items]
        input_keys += [(r.source, r.source_item, r.frame_index) for r in read_rejects]
        counts = summarize(staging, input_keys)
        llm_summary = summarize_llm(config, scratch, staging, counts.get("rows_by_llm_status", {}))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    data_files, reject_files = staging.list_files()
    manifest = Manifest(
        schema_version=schema_version("record"),
        created_unix=int(time.time()),
        sources=[s.model_dump(mode="json") for s in config.sources],
        counts=Counts(**counts, labelled_inputs_by_emotion=dict(sorted(Counter(
            i.emotion for i in items if i.emotion).items()))),
        stage_counters=stage_counters(result),
        llm=llm_summary or None,
        versions=versions,
        models={name: {"path": f.path.name, "sha256": f.sha256} for name, f in models.items()},
        au_vocabulary=codes,
        au_intensity_scale=("0-5 = 5 x py-feat occurrence probability (schemas/pyfeat_to_au.json)" if pyfeat_mapping
                            else INTENSITY_SCALE),
        au_head=None if pyfeat_mapping else head_summary(head),
        blendshape_names=blendshape_names,
        face_measure_names=measures.names,
        face_measures_version=measures.version,
        au_not_measured=pyfeat_mapping.not_measured if pyfeat_mapping else [],
        crop_size=config.align.crop_size,
        splits=splits,
        params=config.model_dump(mode="json", by_alias=True, exclude={"base_dir"}),
        resume=Resume(shards=len(shards), shard_size=config.runner.shard_size, reused=len(reused)),
        build_seconds=round(time.monotonic() - started, 2),
        # Where the time went: set-up (inputs, templates, graph), the Beam run, the counts read back.
        timings_s={"setup": round(pipeline_started - started, 2), "pipeline": round(pipeline_seconds, 2),
                   "summary": round(time.monotonic() - pipeline_started - pipeline_seconds, 2)},
        shards=data_files,
        reject_files=reject_files,
    )
    staging.write_manifest(manifest)
    write_dataset_card(staging)  # README.md: the Hugging Face dataset card of the release
    report = None
    if validate:
        v = config.validate_
        report = validate_build(
            staging, config.resolve_input(v.suite), v.min_accept_rate,
            max_duplicate_rate=v.max_duplicate_rate, min_class_accept_ratio=v.min_class_accept_ratio,
            reverify_rows=v.reverify_rows, suite_executor=suite_executor,
        )
        if not report.success:
            raise ValidationFailed(staging.root, report)
    publish(staging, target)
    if report is not None:  # the report was written inside the staging folder, which is now the release
        report.result_path = target.validation_dir / report.result_path.name
        report.html_path = target.validation_dir / report.html_path.name
    return BuildResult(target.root, manifest, time.monotonic() - started, report)


def image_steps(config: Config, landmarker_file: ModelFile, models: dict[str, ModelFile], measures: MeshMeasures,
                head: AUHead, blendshape_model: str, pyfeat_mapping: PyFeatAUMapping | None, prototypes: Prototypes,
                progress_dir: str) -> list[tuple[str, beam.PTransform]]:
    """The image stages (decode to synergy) as steps over a shard: runs of one-element stages in one step,
    each batched model stage in a step of its own (with the AU accelerator hint, if any)."""
    au, d = config.au, config.detect
    steps: list[tuple[str, beam.PTransform]] = []
    pending: list[beam.DoFn] = [
        DecodeStage(config.decode),
        DetectStage(d, str(landmarker_file.path), pin=pin_scope(config), own_process=worker_owns_process(config)),
    ]

    def flush() -> None:
        if pending:
            label = "+".join(type(stage).__name__.removesuffix("Stage") for stage in pending)
            # The first step counts the inputs it has done, for the progress bar.
            steps.append((label, beam.ParDo(OnShard(list(pending), progress=None if steps else progress_dir))))
            pending.clear()

    def batched(label: str, stage: beam.DoFn, batch_size: int) -> None:
        flush()
        step = beam.ParDo(OnShard([stage], batch_size=batch_size))
        steps.append((label, step.with_resource_hints(accelerator=au.accelerator) if au.accelerator else step))

    if d.landmarks == "face-alignment":
        batched("FanLandmarks", FanLandmarksStage(str(models["fan_2d"].path), d.fan_device), d.fan_batch_size)
    if config.dedup.enabled:  # from the source pixels, which align drops
        pending.append(FingerprintStage(config.dedup))
    template = config.resolve_input("schemas/alignment_template.json")
    pending += [AlignStage(config.align, template), MeasureStage(measures)]
    if au.backend == "torch-blendshapes":
        batched("Blendshapes", TorchBlendshapesStage(au.device, str(landmarker_file.path)), au.max_batch_size)
    if au.backend == "pyfeat":
        stage = PyFeatAUStage(pyfeat_mapping, str(models["pyfeat_xgb_au"].path), au.device)
        batched("AU", stage, au.max_batch_size)
    else:
        pending.append(AUStage(head, blendshape_model))
    pending.append(SynergyStage(config.synergy, prototypes))
    flush()
    return steps


def head_summary(head: AUHead) -> dict[str, Any]:
    """What the manifest and dataset card say about the AU head: its name, version, origin and known accuracy."""
    return {"name": head.name, "version": head.version, "method": head.meta.get("method"),
            "fitted_on": head.fitted_on, "origin": head.origin, "quality": head.quality,
            "quality_source": head.meta.get("quality_source")}


def check_llm(config: Config, template_tasks: list[str]) -> None:
    """Fail before any worker starts when the LLM stage cannot work: unknown tasks, a broken prompt
    file, or (online) no API key in the environment variable named by llm.api_key_env."""
    llm = config.llm
    if not llm.enabled:
        return
    from pipeline.llm.prompts import PromptBook  # the LLM modules (openai) load only when the stage is on

    PromptBook(config.resolve_input(llm.prompts))
    unknown = sorted(set(llm.tasks) - set(template_tasks))
    if unknown:
        raise ConfigError(f"llm.tasks names tasks without templates: {unknown}")
    if llm.mode == "online" and not os.environ.get(llm.api_key_env):
        raise ConfigError(f"llm.enabled is true but the environment variable {llm.api_key_env} (llm.api_key_env) "
                          "is not set; export the API key there (any non-empty value for a local server)")


def llm_stage(config: Config, scratch: Path):
    from pipeline.stages.llm import LLMStage

    llm = config.llm
    # Each worker process gets its share, so all workers together never exceed llm.max_concurrency.
    workers = config.runner.num_workers if config.runner.runner == "DirectRunner" else 1
    return LLMStage(
        llm, str(config.resolve_input(llm.prompts)), str(config.resolve_input(config.au.vocabulary)),
        str(config.resolve_output(llm.cache_dir)), str(scratch / "_llm_budget.json"), str(scratch / "_llm_batch"),
        concurrency=max(1, llm.max_concurrency // max(1, workers)),
    )


def summarize_llm(config: Config, scratch: Path, staging: BuildDir, rows_by_llm_status: dict[str, int]
                  ) -> dict[str, Any]:
    """LLM figures for the manifest (hallucination rate from the written rows' counts) and the merged
    Batch-API request file when the build ran in batch-export mode."""
    if not config.llm.enabled:
        return {}
    answered = rows_by_llm_status.get("ok", 0) + rows_by_llm_status.get("hallucinated", 0)
    summary: dict[str, Any] = {
        "model": config.llm.model,
        "mode": config.llm.mode,
        "rows_by_llm_status": rows_by_llm_status,
        "hallucination_rate": round(rows_by_llm_status.get("hallucinated", 0) / answered, 4) if answered else None,
    }
    ledger = scratch / "_llm_budget.json"
    if ledger.exists():
        summary["budget"] = {**json.loads(ledger.read_text() or "{}"), "limit": config.llm.budget_tokens}
        ledger.unlink()
    batch_dir = scratch / "_llm_batch"
    if batch_dir.exists():
        from pipeline.llm.batch import merge_request_files

        merged = scratch / "llm_batch_requests.jsonl"
        summary["batch_requests"] = merge_request_files(batch_dir.glob("*.jsonl"), merged)
        if merged.exists():
            (staging.root / merged.name).write_bytes(merged.read_bytes())
        shutil.rmtree(batch_dir)
    return summary


def stage_counters(result) -> dict[str, dict[str, int]]:
    """Beam counters per stage (in, out, reject.<reason>) as reported by the runner."""
    counters: dict[str, dict[str, int]] = {}
    try:
        for c in result.metrics().query()["counters"]:
            counters.setdefault(c.key.metric.namespace, {})[c.key.metric.name] = int(c.committed or c.attempted or 0)
    except Exception:  # noqa: BLE001 - counters are informative; a runner without them is fine
        log.warning("runner reported no metrics")
    return {k: dict(sorted(v.items())) for k, v in sorted(counters.items())}
