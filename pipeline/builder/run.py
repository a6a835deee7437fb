"""The Beam pipeline: sources -> the plan's steps -> Parquet, rejects and manifest. Wiring only.

What a build does is decided elsewhere: the knowledge it applies (`pipeline.knowledge`), its steps and the
backends behind them (`pipeline.builder.plan`, `pipeline.builder.backends`), its manifest
(`pipeline.builder.manifest`), the runner (`pipeline.builder.runner`) and the end of a build
(`pipeline.builder.finish`). A build writes into `<out>.partial` (a folder, or a prefix on object storage) and
is published to `<out>` only once its manifest adds up and it passed validation, so a reader never sees a
half-written build (`pipeline.io.publish`). Its image work runs in shards that leave completion markers, so a
build that stopped reruns only its unfinished shards (`pipeline.io.shards`).
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import apache_beam as beam
from apache_beam.io.parquetio import WriteToParquet

from pipeline.builder.finish import ValidationFailed, finish
from pipeline.builder.inputs import Shards, enumerate_inputs, prepare_shards
from pipeline.builder.manifest import build_manifest
from pipeline.builder.plan import Plan, plan
from pipeline.builder.runner import new_pipeline, run, stage_counters
from pipeline.builder.shard_steps import LoadShard, ReadShard, SaveShard, on_shards
from pipeline.config import Config, OutputConfig
from pipeline.domain.record import Reject
from pipeline.io.accounting import summarize
from pipeline.io.build_dir import BuildDir
from pipeline.io.manifest import Manifest
from pipeline.io.publish import staging_for
from pipeline.io.rows import ToRows, reject_row
from pipeline.io.schema import arrow_schema
from pipeline.knowledge import Knowledge
from pipeline.llm.summary import summarize_llm
from pipeline.process.warm_process import WarmProcess, suite_process
from pipeline.stages.base import REJECTS

__all__ = ["BuildResult", "ValidationFailed", "build", "parquet_writer"]

log = logging.getLogger(__name__)


@dataclass
class BuildResult:
    out_dir: Path  # a local Path, or a UPath for an object-storage URL
    manifest: Manifest
    seconds: float
    validation: Any = None  # pipeline.validate.ValidationReport when the build was validated


def parquet_writer(prefix: Path, schema, output: OutputConfig) -> WriteToParquet:
    """Beam's Parquet sink with the build's naming (`<prefix>-00000-of-00002.parquet`) and codec. Beam's
    default buffers 64 MB per writer before it writes a row group; `output.row_group_mb` bounds that, so a
    worker's memory stays flat whatever the size of the build."""
    return WriteToParquet(
        str(prefix), schema, codec="none" if output.compression == "none" else output.compression,
        file_name_suffix=".parquet", shard_name_template="-SSSSS-of-NNNNN",
        row_group_buffer_size=int(output.row_group_mb * 2**20), record_batch_size=64,
    )


def build(config: Config, progress: bool = True, validate: bool = True,
          suite_executor: WarmProcess | None = None) -> BuildResult:
    """Run the pipeline, check the accounting, validate (unless told not to) and publish.

    Great Expectations loads in a helper process while the pipeline runs, then runs the suite there in
    parallel with the project checks (`pipeline.process.warm_process.suite_process`). A caller that has started
    that helper already (`fea build` does, before its own imports) passes it as `suite_executor`."""
    with contextlib.ExitStack() as stack:
        if validate and suite_executor is None:
            suite_executor = stack.enter_context(suite_process())
        return _build(config, progress, validate, suite_executor if validate else None)


def _build(config: Config, progress: bool, validate: bool, suite_executor: WarmProcess | None) -> BuildResult:
    started = time.monotonic()
    target = BuildDir(config.paths.output_dir)
    staging = BuildDir(staging_for(target.root))
    if target.root.exists() and not config.output.overwrite:
        raise FileExistsError(f"{target} exists and output.overwrite is false")
    # Everything that can fail for a whole-run reason fails here, before any worker starts.
    items, read_rejects = enumerate_inputs(config)
    knowledge = Knowledge.load(config)
    scratch = Path(tempfile.mkdtemp(prefix="fea-build-"))  # this machine's own files: progress, LLM ledger
    try:
        build_plan = plan(config, knowledge, scratch)
        shards = prepare_shards(config, staging, items, build_plan.versions)
        log.info("build: %d inputs (%d refused on reading) from %d source(s)",
                 len(items) + len(read_rejects), len(read_rejects), len(config.sources))
        p = new_pipeline(config)
        splits = sorted(set(config.split.ratios) | {i.split for i in items if i.split})
        wire(p, config, build_plan, shards, read_rejects, splits, staging, str(scratch / "progress"))
        pipeline_started = time.monotonic()
        result = run(p, config, target, staging, scratch / "progress", sum(s.size for s in shards.todo), progress)
        pipeline_seconds = time.monotonic() - pipeline_started
        counts = summarize(staging, [(e.source, e.source_item, e.frame_index) for e in [*items, *read_rejects]])
        llm = summarize_llm(config.llm, scratch, staging, counts.get("rows_by_llm_status", {}))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    data_files, reject_files = staging.list_files()
    manifest = build_manifest(
        config, knowledge, build_plan, items, counts, stage_counters=stage_counters(result), llm=llm or None,
        splits=splits, resume=shards.resume(config), build_seconds=round(time.monotonic() - started, 2),
        # Where the time went: set-up (inputs, plan, graph), the Beam run, the counts read back.
        timings_s={"setup": round(pipeline_started - started, 2), "pipeline": round(pipeline_seconds, 2),
                   "summary": round(time.monotonic() - pipeline_started - pipeline_seconds, 2)},
        shards=data_files, reject_files=reject_files,
    )
    report = finish(config, knowledge, staging, target, manifest, validate, suite_executor)
    return BuildResult(target.root, manifest, time.monotonic() - started, report)


def wire(p: beam.Pipeline, config: Config, build_plan: Plan, shards: Shards, read_rejects: list[Reject],
         splits: list[str], staging: BuildDir, progress: str) -> None:
    """The build's graph in `p`: the image steps over the shards to do, the faces of all shards through the other
    steps, rows by split into Parquet shards, and every reject into the rejects files."""
    stage_rejects: list = []
    work = (p
            | "Shards" >> beam.Create(shards.todo, reshuffle=False)
            | "Distribute" >> beam.Reshuffle()  # shards, not items, cross between workers: nothing is re-encoded
            | "LoadShard" >> beam.ParDo(LoadShard(shards.store)))
    for label, step in on_shards(build_plan.image, progress):
        work = work | label >> step
    fresh = work | "SaveShard" >> beam.ParDo(SaveShard(shards.store)).with_outputs(REJECTS, main="ok")
    again = (p
             | "FinishedShards" >> beam.Create(shards.reused, reshuffle=False)
             | "ReadShard" >> beam.ParDo(ReadShard(shards.store)).with_outputs(REJECTS, main="ok"))
    stage_rejects += [fresh[REJECTS], again[REJECTS]]
    elements = (fresh.ok, again.ok) | "Faces" >> beam.Flatten()
    for step in build_plan.faces:
        elements = step.apply(elements, stage_rejects)
    rows = elements | "ToRows" >> beam.ParDo(ToRows(config.split.ratios, config.split.seed, build_plan.versions))
    by_split = rows | "BySplit" >> beam.Partition(lambda row, _n: splits.index(row["split"]), len(splits))
    for name, part in zip(splits, by_split, strict=True):
        part | f"Write[{name}]" >> parquet_writer(staging.data_dir / name, arrow_schema("record"), config.output)
    (
        [p | "ReadRejects" >> beam.Create(read_rejects, reshuffle=False), *stage_rejects]
        | "AllRejects" >> beam.Flatten()
        | "RejectRows" >> beam.Map(reject_row, build_plan.versions)
        | "WriteRejects" >> parquet_writer(staging.rejects_dir / "rejects", arrow_schema("reject"), config.output)
    )
