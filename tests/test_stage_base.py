"""One base for every step: each DoFn of pipeline/stages is a `Stage`, and the batched entry point keeps the
accounting (inputs = outputs + rejects, every input exactly once) also when a whole batch fails."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from typing import Any

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.runners.portability.fn_api_runner import FnApiRunner

import pipeline.stages
from pipeline.builder.shard_steps import OnShard, ShardWork
from pipeline.domain.record import Reject, Sample, SourceItem
from pipeline.io.shards import Shard
from pipeline.stages.base import REJECTS, BatchStage, Stage
from pipeline.stages.blendshapes_torch import TorchBlendshapesStage
from pipeline.stages.landmarks_fan import FanLandmarksStage


def stage_classes() -> list[type]:
    """Every DoFn class defined in a module of pipeline/stages."""
    found = []
    for info in pkgutil.iter_modules(pipeline.stages.__path__):
        module = importlib.import_module(f"pipeline.stages.{info.name}")
        found += [cls for _, cls in inspect.getmembers(module, inspect.isclass)
                  if issubclass(cls, beam.DoFn) and cls.__module__ == module.__name__]
    return found


def test_every_step_class_in_stages_is_a_stage() -> None:
    classes = stage_classes()
    assert len(classes) >= 12  # decode ... verify, the batched model stages and the LLM stage
    assert [c.__name__ for c in classes if not issubclass(c, Stage)] == []
    batched = {c.__name__ for c in classes if issubclass(c, BatchStage) and c is not BatchStage}
    assert batched == {"ModelStage", "TorchBlendshapesStage", "FanLandmarksStage", "PyFeatAUStage", "LLMStage",
                       "TorchDetectStage"}


def samples(n: int) -> list[Sample]:
    return [Sample(SourceItem("t", f"{i}.jpg", f"/x/{i}.jpg"), image_sha256=str(i), mesh=np.zeros((478, 3)))
            for i in range(n)]


class Halves(BatchStage):
    """Keeps even-numbered faces, rejects odd ones; a batch holding face 7 fails as a whole."""

    name = "halves"
    reasons = ("odd",)

    def run_batch(self, batch: list[Sample]) -> list[list[Any]]:
        if any(s.image_sha256 == "7" for s in batch):
            raise RuntimeError("the model fell over")
        return [[s] if int(s.image_sha256) % 2 == 0 else [self.reject(s, "odd")] for s in batch]


def split(outputs: list[Any]) -> tuple[list[Sample], list[Reject]]:
    kept = [o for o in outputs if not isinstance(o, beam.pvalue.TaggedOutput)]
    rejects = [o.value for o in outputs if isinstance(o, beam.pvalue.TaggedOutput)]
    assert all(o.tag == REJECTS for o in outputs if isinstance(o, beam.pvalue.TaggedOutput))
    return kept, rejects


def assert_accounted(inputs: list[Sample], kept: list[Sample], rejects: list[Reject]) -> None:
    assert len(kept) + len(rejects) == len(inputs)
    assert sorted([s.image_sha256 for s in kept] + [r.image_sha256 for r in rejects]) == sorted(
        s.image_sha256 for s in inputs)


def test_batched_path_keeps_the_accounting_when_a_batch_fails() -> None:
    inputs = samples(10)
    work = ShardWork(Shard(0, "s", 10), list(inputs))
    step = OnShard([Halves()], batch_size=4)
    step.setup()
    (done,) = step.process(work)  # batches 0-3, 4-7 (fails), 8-9
    assert_accounted(inputs, done.elements, done.rejects)
    assert [s.image_sha256 for s in done.elements] == ["0", "2", "8"]
    reasons = {r.image_sha256: r.reason for r in done.rejects}
    assert reasons == {"1": "odd", "3": "odd", "4": "internal_error", "5": "internal_error", "6": "internal_error",
                       "7": "internal_error", "9": "odd"}
    assert all("the model fell over" in r.detail for r in done.rejects if r.reason == "internal_error")


class Miscounts(BatchStage):
    name = "miscounts"

    def run_batch(self, batch: list[Sample]) -> list[list[Any]]:
        return [[s] for s in batch[1:]]  # one element lost: the base refuses the whole batch rather than drop it


def test_a_batch_that_loses_an_element_is_rejected_whole() -> None:
    inputs = samples(3)
    kept, rejects = split(list(Miscounts().process(inputs)))
    assert kept == [] and [r.reason for r in rejects] == ["internal_error"] * 3
    assert "2 results for a batch of 3" in rejects[0].detail


class Broken:
    device = None

    def predict(self, *args: Any) -> Any:
        raise RuntimeError("CUDA out of memory")


@pytest.mark.parametrize("stage", [TorchBlendshapesStage("cpu", None), FanLandmarksStage(None, "cpu")],
                         ids=["blendshapes", "landmarks"])
def test_model_stages_reject_each_face_of_a_failed_batch(stage: BatchStage) -> None:
    stage.model = Broken()  # what setup() loads, failing as a real model can
    inputs = samples(5)
    kept, rejects = split(list(stage.process(inputs)))
    assert_accounted(inputs, kept, rejects)
    assert {(r.stage, r.reason) for r in rejects} == {(stage.name, "internal_error")}


def test_counters_add_up_in_a_pipeline() -> None:
    """Run in Beam (BatchElements feeding the stage): in = out + rejects, counted under the stage's name."""
    with beam.Pipeline(runner=FnApiRunner()) as p:
        result = (p | beam.Create(samples(10), reshuffle=False)
                  | beam.BatchElements(min_batch_size=4, max_batch_size=4)
                  | beam.ParDo(Halves()).with_outputs(REJECTS, main="ok"))
        _ = result.ok, result[REJECTS]
    counters = {c.key.metric.name: c.committed for c in p.result.metrics().query()["counters"]
                if c.key.metric.namespace == "halves"}
    assert counters["in"] == 10
    assert counters["in"] == counters["out"] + sum(v for k, v in counters.items() if k.startswith("reject."))
