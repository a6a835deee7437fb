"""What every step shares: reject routing, counters, and a guard so one bad element never kills a run.

A stage implements `run(element, *side_inputs)`, a generator that yields the next element(s) or a `Reject`;
a batched stage (`BatchStage`: a model's forward pass over many faces, requests sent together) implements
`run_batch(batch)` instead, one list of outputs per element. `process` (Beam's entry point) sends rejects to
the REJECTS tagged output, counts everything under the stage's name (`in`, `out`, `reject.<reason>`), and
turns an unexpected exception into an `internal_error` reject with the exception's text, so it is visible in
the rejects table rather than lost or fatal; a batch that fails as a whole becomes one such reject per element
(a dead-letter output). An element always leaves a stage as its outputs or as one reject: never both, never
neither. Only the exceptions a stage names in `stops_run` (a run stopped on purpose) propagate.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import apache_beam as beam
from apache_beam.metrics import Metrics

from pipeline.domain.record import Instruction, Reject, Sample, SourceItem
from pipeline.errors import describe

REJECTS = "rejects"


def sample_of(element: Any) -> Sample | None:
    """The face an element is about (None for an input not decoded yet)."""
    if isinstance(element, Instruction):
        return element.sample
    return element if isinstance(element, Sample) else None


def item_of(element: Any) -> SourceItem:
    sample = sample_of(element)
    return element if sample is None else sample.item


class Stage(beam.DoFn):
    """Base DoFn of every step. Subclasses set `name` and `reasons` and implement `run`.

    A stage over samples also declares its contract, the `Sample` fields it `reads`, `writes` and `drops` (sets
    to None, freeing memory): the plan checks the order of its steps against them before any worker starts
    (`pipeline.builder.plan.check_fields`), and tests/test_stage_contracts.py holds each stage to its declaration."""

    name = "stage"
    reasons: tuple[str, ...] = ()
    reads: frozenset[str] = frozenset()
    writes: frozenset[str] = frozenset()
    drops: frozenset[str] = frozenset()
    stops_run: tuple[type[Exception], ...] = ()  # exceptions that stop the build instead of rejecting an element

    def __init__(self) -> None:
        super().__init__()
        self._counters: dict[str, Any] = {}

    def count(self, what: str, n: int = 1) -> None:
        counter = self._counters.get(what)
        if counter is None:
            counter = self._counters[what] = Metrics.counter(self.name, what)
        counter.inc(n)

    def reject(self, element: Any, reason: str, detail: str = "") -> Reject:
        sample = sample_of(element)
        return Reject.of(item_of(element), self.name, reason, detail, sample.image_sha256 if sample else None)

    def run(self, element: Any, *side_inputs: Any) -> Iterator[Any]:
        raise NotImplementedError

    # *side_inputs stays unannotated: Beam would read `Any` there as the hint of the whole tuple and refuse it.
    def process(self, element: Any, *side_inputs) -> Iterator[Any]:
        self.count("in")
        try:
            # Collected first: an element that fails half-way must not be both emitted and rejected.
            outputs = list(self.run(element, *side_inputs))
        except self.stops_run:
            raise
        except Exception as exc:  # noqa: BLE001 - any failure of one element becomes its reject
            outputs = [self.reject(element, "internal_error", describe(exc))]
        yield from self.settle(element, outputs)

    def settle(self, element: Any, outputs: list[Any]) -> Iterator[Any]:
        """The outputs of one element, held to the guarantee, counted and routed (rejects to REJECTS)."""
        rejects = [out for out in outputs if isinstance(out, Reject)]
        if not outputs:  # an element that vanishes would be lost to the accounting
            outputs = [self.reject(element, "internal_error", "stage yielded neither an output nor a reject")]
        elif rejects and len(rejects) < len(outputs):  # never both in the data and among the rejects
            reasons = ", ".join(sorted({r.reason for r in rejects}))
            outputs = [self.reject(element, "internal_error", f"stage yielded outputs and rejects ({reasons})")]
        for out in outputs:
            if isinstance(out, Reject):
                self.count(f"reject.{out.reason}")
                yield beam.pvalue.TaggedOutput(REJECTS, out)
            else:
                self.count("out")
                yield out


class BatchStage(Stage):
    """A stage over batches: Beam hands `process` a list (from `beam.BatchElements`, or a shard's batch in
    `pipeline.builder.shard_steps.OnShard`); `run_batch` returns one list of outputs per element, in order.

    RunInference-style: the model is loaded once per worker in `setup`; the guarantee holds per element, and a
    batch that fails as a whole (or returns the wrong number of results) is one reject per element."""

    def run_batch(self, batch: list[Any]) -> Sequence[list[Any]]:
        raise NotImplementedError

    def run(self, element: Any, *side_inputs: Any) -> Iterator[Any]:
        yield from self.run_batch([element])[0]  # one element is a batch of one

    def process(self, batch: list[Any], *side_inputs) -> Iterator[Any]:
        batch = list(batch)
        self.count("in", len(batch))
        Metrics.distribution(self.name, "batch_size").update(len(batch))
        try:
            results = list(self.run_batch(batch))
            if len(results) != len(batch):
                raise RuntimeError(f"run_batch gave {len(results)} results for a batch of {len(batch)}")
        except self.stops_run:
            raise
        except Exception as exc:  # noqa: BLE001 - a failed batch is a reject per element, never a failed run
            results = [[self.reject(element, "internal_error", describe(exc))] for element in batch]
        for element, outputs in zip(batch, results, strict=True):
            yield from self.settle(element, list(outputs))


class ModelStage(BatchStage):
    """A batched stage around a torch model, loaded once per worker (`load_model`, called by `setup`)."""

    def __init__(self) -> None:
        super().__init__()
        self.model: Any = None

    def load_model(self) -> Any:
        raise NotImplementedError

    def setup(self) -> None:
        self.model = self.load_model()
        if self.model.device.type == "cpu":
            import torch

            torch.set_num_threads(1)  # Beam runs one worker per core; more threads oversubscribe
