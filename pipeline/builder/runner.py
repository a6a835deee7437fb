"""The Beam runner a build runs on: its options, the direct runner's worker processes, where the face model is
pinned, the run itself (with a plain reason when it fails) and the counters it reports."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.portability.fn_api_runner import fn_runner
from apache_beam.transforms import environments

from pipeline.builder.progress import ProgressDisplay
from pipeline.config import Config
from pipeline.errors import LLMStopped, PipelineFailed, describe
from pipeline.io.build_dir import BuildDir
from pipeline.process import beam_worker

log = logging.getLogger(__name__)


def pipeline_options(config: Config) -> PipelineOptions:
    runner = config.runner
    args = [f"--runner={runner.runner}", "--default_sdk_harness_log_level=ERROR", *runner.extra_options]
    if runner.runner == "DirectRunner":
        # Read by the FnApiRunner that pipeline_runner() builds in place of the DirectRunner's own choice.
        args += [f"--direct_running_mode={runner.direct_running_mode}",
                 f"--direct_num_workers={runner.num_workers}"]
    return PipelineOptions(args)


def pipeline_runner(config: Config, options: PipelineOptions) -> QuietWorkersRunner | None:
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
    """Beam's FnApiRunner whose worker processes start with `pipeline.process.beam_worker` (Beam's harness with
    quiet start-up logs) instead of Beam's own `sdk_worker_main`. FnApiRunner.run_pipeline() sets the
    worker environment from `direct_running_mode`, so the command is swapped where that attribute is set."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "_default_environment" and isinstance(value, environments.SubprocessSDKEnvironment):
            value = environments.SubprocessSDKEnvironment.from_command_string(beam_worker.command())
        super().__setattr__(name, value)


def new_pipeline(config: Config) -> beam.Pipeline:
    options = pipeline_options(config)
    return beam.Pipeline(runner=pipeline_runner(config, options), options=options)


def run(p: beam.Pipeline, config: Config, target: BuildDir, staging: BuildDir, progress: Path, total: int,
        show_progress: bool) -> Any:
    """Run the pipeline to its end with a progress display (inputs done of `total`, counted in `progress`);
    a failure is re-raised as LLMStopped or PipelineFailed, saying plainly why the build stopped."""
    try:
        with ProgressDisplay(progress, total=total, enabled=show_progress):
            result = p.run()
            result.wait_until_finish()
            return result
    except Exception as exc:
        # Beam re-raises a worker's exception wrapped in its own.
        if LLMStopped.__name__ in str(exc):
            cache_dir = config.paths.llm_cache_dir
            raise LLMStopped(f"build stopped: the LLM endpoint failed and llm.on_error is 'stop'; "
                             f"responses received so far are cached in {cache_dir}") from exc
        raise PipelineFailed(f"the pipeline failed ({describe(exc)[:500]}); nothing was published"
                             + (f", {target} is unchanged" if target.root.exists() else "")
                             + f"; partial output left in {staging} (a rerun reuses its finished shards)") from exc


def stage_counters(result: Any) -> dict[str, dict[str, int]]:
    """Beam counters per stage (in, out, reject.<reason>) as reported by the runner."""
    counters: dict[str, dict[str, int]] = {}
    try:
        for c in result.metrics().query()["counters"]:
            counters.setdefault(c.key.metric.namespace, {})[c.key.metric.name] = int(c.committed or c.attempted or 0)
    except Exception:  # noqa: BLE001 - counters are informative; a runner without them is fine
        log.warning("runner reported no metrics")
    return {k: dict(sorted(v.items())) for k, v in sorted(counters.items())}
