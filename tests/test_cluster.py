"""Cluster readiness without a cluster: runner flags from params reach Beam's PipelineOptions, and the
whole build graph serialises to the portable runner API (every DoFn pickled), as a remote runner needs."""

from __future__ import annotations

import logging

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import (
    DirectOptions,
    FlinkRunnerOptions,
    GoogleCloudOptions,
    PortableOptions,
    SetupOptions,
    SparkRunnerOptions,
    WorkerOptions,
)
from apache_beam.testing.util import assert_that, equal_to
from google.protobuf import json_format

from pipeline.builder.run import build
from pipeline.builder.runner import pipeline_options, pipeline_runner
from pipeline.config import load_config
from pipeline.errors import PipelineFailed

DATAFLOW = ["--project=my-project", "--region=europe-west4", "--temp_location=gs://my-bucket/tmp",
            "--sdk_container_image=europe-docker.pkg.dev/my-project/fea/worker:0.1.0",
            "--machine_type=n1-standard-4", "--max_num_workers=20", "--experiments=use_runner_v2"]


def test_dataflow_flags_reach_pipeline_options() -> None:
    config = load_config(None, ["runner.runner=DataflowRunner", f"runner.extra_options={DATAFLOW}"])
    options = pipeline_options(config)
    gcp = options.view_as(GoogleCloudOptions)
    assert (gcp.project, gcp.region, gcp.temp_location) == ("my-project", "europe-west4", "gs://my-bucket/tmp")
    worker = options.view_as(WorkerOptions)
    assert worker.machine_type == "n1-standard-4" and worker.max_num_workers == 20
    assert worker.sdk_container_image.endswith("/fea/worker:0.1.0")
    # Direct-runner settings are only added for the DirectRunner.
    assert "direct_running_mode" not in options.get_all_options(drop_default=True)


def test_flink_and_spark_flags_reach_pipeline_options() -> None:
    flink = pipeline_options(load_config(None, [
        "runner.runner=FlinkRunner",
        "runner.extra_options=['--flink_master=flink-jm:8081', '--parallelism=8', '--environment_type=DOCKER',"
        " '--environment_config=registry/fea-worker:0.1.0']",
    ]))
    assert flink.view_as(FlinkRunnerOptions).flink_master == "flink-jm:8081"
    assert flink.view_as(FlinkRunnerOptions).parallelism == 8
    assert flink.view_as(PortableOptions).environment_type == "DOCKER"
    spark = pipeline_options(load_config(None, [
        "runner.runner=SparkRunner", "runner.extra_options=['--spark_master_url=spark://master:7077']",
    ]))
    assert spark.view_as(SparkRunnerOptions).spark_master_url == "spark://master:7077"


def test_direct_runner_settings() -> None:
    config = load_config(None, ["runner.num_workers=3", "runner.direct_running_mode=multi_threading",
                                "runner.extra_options=['--save_main_session']"])
    options = pipeline_options(config)
    direct = options.view_as(DirectOptions)
    assert (direct.direct_running_mode, direct.direct_num_workers) == ("multi_threading", 3)
    assert options.view_as(SetupOptions).save_main_session is True


def test_the_direct_runner_is_beams_fn_api_runner_never_prism(caplog) -> None:
    """Left to itself, Beam's DirectRunner tries Prism first (downloaded at run time: a failed attempt
    offline, a different runner online). The build builds the FnApiRunner itself, with the options."""
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner

    config = load_config(None, ["runner.num_workers=1", "runner.direct_running_mode=in_memory"])
    options = pipeline_options(config)
    runner = pipeline_runner(config, options)
    assert isinstance(runner, FnApiRunner)
    sent = json_format.MessageToDict(runner._provision_info.provision_info.pipeline_options)
    assert sent["beam:option:default_sdk_harness_log_level:v1"] == "ERROR"  # workers get the build's options
    caplog.set_level(logging.INFO)
    with beam.Pipeline(runner=runner, options=options) as p:
        assert_that(p | beam.Create([1, 2, 3]) | beam.Map(lambda x: x * 2), equal_to([2, 4, 6]))
    assert "Prism" not in caplog.text
    dataflow = load_config(None, ["runner.runner=DataflowRunner"])
    assert pipeline_runner(dataflow, pipeline_options(dataflow)) is None  # Beam resolves --runner itself


class GraphCaptured(Exception):
    pass


def test_build_graph_serialises_for_a_remote_runner(monkeypatch, demo_dir, tmp_path) -> None:
    """What a remote runner receives: the graph as runner-API protos with every DoFn pickled. The image stages
    run over shards (one step per run of one-element stages, one per batched model stage); the AU model
    step's accelerator hint must be on that step only, and nothing may need the driver's memory."""
    captured = {}

    def capture(self):
        proto = self.to_runner_api()
        captured["proto"] = proto
        # Round trip: unpickles every DoFn, as a worker would.
        captured["pipeline"] = beam.Pipeline.from_runner_api(proto, self.runner, self._options)
        raise GraphCaptured()

    monkeypatch.setattr(beam.Pipeline, "run", capture)
    hint = "type:nvidia-tesla-t4;count:1;install-nvidia-driver"
    config = load_config(None, [
        "sources=[{name: demo, kind: demo, limit: 2}]", f"output.dir={tmp_path / 'out'}",
        "au.backend=torch-blendshapes", f"au.accelerator='{hint}'",
    ])
    with pytest.raises(PipelineFailed, match="GraphCaptured"):
        build(config, progress=False, validate=False)
    proto = captured["proto"]
    names = {t.unique_name: t for t in proto.components.transforms.values()}
    assert {"LoadShard", "Decode+Detect+Fingerprint+Align+Measure", "Blendshapes", "AU+Synergy", "SaveShard",
            "ReadShard", "Render", "Verify"} <= set(names)
    # Beam keeps resource hints on the transform's environment: only the AU model step asks for a GPU.
    envs = proto.components.environments
    accelerator = "beam:resources:accelerator:v1"
    gpu_steps = {t.unique_name for t in names.values()
                 if t.environment_id and accelerator in envs[t.environment_id].resource_hints}
    assert gpu_steps == {"Blendshapes"}, gpu_steps
    step = names["Blendshapes"]
    assert envs[step.environment_id].resource_hints[accelerator] == hint.encode()
    assert accelerator not in envs[names["Decode+Detect+Fingerprint+Align+Measure"].environment_id].resource_hints
    assert captured["pipeline"] is not None
