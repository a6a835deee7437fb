"""Beam steps that carry one shard of inputs through the image stages, and write its outcome and marker.

The element between these steps is a `ShardWork`: a shard and what has become of its inputs so far
(the elements still going on, the rejects gathered). Each step runs some of the stages over it:

* `OnShard([Decode, Detect, ...])`: stages that take one element; each input goes through all of them
  before the next starts, so one image's pixels at a time are held;
* `OnShard([Blendshapes], batch_size=64)`: one batched model stage (RunInference-style) over the shard's
  elements in batches; the step can carry a resource hint (an accelerator) of its own.

`on_shards` makes these Beam steps from the plan's image steps (`pipeline.builder.plan`).

Every stage keeps its own counters and reject reasons (it runs through its own `process`), so the
accounting guarantee of `pipeline.stages.base` holds as before. `SaveShard` writes the outcome and the
marker (`pipeline.io.shards`) and hands the faces and rejects on; `ReadShard` hands on those of a shard
an earlier run finished.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import apache_beam as beam
from apache_beam.metrics import Metrics

from pipeline.builder.progress import ProgressFile
from pipeline.domain.record import Reject
from pipeline.io.shards import Shard, ShardStore
from pipeline.io.storage import is_url, prefetch
from pipeline.stages.base import REJECTS

if TYPE_CHECKING:
    from pipeline.builder.step import Step


@dataclass
class ShardWork:
    shard: Shard
    elements: list[Any]  # SourceItems at first, then Samples
    rejects: list[Reject] = field(default_factory=list)


class LoadShard(beam.DoFn):
    """Shard -> its inputs, read by the worker from the staging folder."""

    def __init__(self, store: ShardStore) -> None:
        self.store = store

    def process(self, shard: Shard) -> Iterator[ShardWork]:
        items = self.store.read_inputs(shard)
        # Images on object storage are fetched together, not one request after the other as decode reads them.
        prefetch([i.uri for i in items if i.data is None and i.frame_index is None and is_url(i.uri)])
        yield ShardWork(shard, items)


class OnShard(beam.DoFn):
    """Run `stages` over a shard's elements: one at a time through all of them, or (`batch_size`) one batched
    stage over batches of at most that many. `progress`: a folder where inputs done are counted."""

    def __init__(self, stages: list[beam.DoFn], batch_size: int | None = None, progress: str | None = None) -> None:
        if batch_size is not None and len(stages) != 1:
            raise ValueError("a batched step runs exactly one stage")
        self.stages = stages
        self.batch_size = batch_size
        self.progress = progress

    def setup(self) -> None:
        for stage in self.stages:
            stage.setup()
        self._progress = ProgressFile(self.progress) if self.progress else None

    def teardown(self) -> None:
        for stage in self.stages:
            stage.teardown()

    @staticmethod
    def _route(outputs: Iterable[Any], kept: list[Any], rejects: list[Reject]) -> None:
        for out in outputs:
            if isinstance(out, beam.pvalue.TaggedOutput):
                rejects.append(out.value)
            else:
                kept.append(out)

    def process(self, work: ShardWork) -> Iterator[ShardWork]:
        kept: list[Any] = []
        if self.batch_size is not None:
            stage = self.stages[0]
            for start in range(0, len(work.elements), self.batch_size):
                self._route(stage.process(work.elements[start:start + self.batch_size]), kept, work.rejects)
        else:
            for element in work.elements:
                current = [element]
                for stage in self.stages:
                    following: list[Any] = []
                    for one in current:
                        self._route(stage.process(one), following, work.rejects)
                    current = following
                kept.extend(current)
                if self._progress is not None:
                    self._progress.add(1)
        if self._progress is not None:
            self._progress.flush()
        work.elements = kept
        yield work


def on_shards(steps: list[Step], progress: str) -> list[tuple[str, beam.PTransform]]:
    """The image steps as Beam steps over a shard: runs of one-element steps in one `OnShard`, each batched step
    in one of its own (with its resource hint, if any). The first counts the inputs done in `progress`."""
    out: list[tuple[str, beam.PTransform]] = []
    pending: list[Step] = []

    def flush() -> None:
        if pending:
            stages = [step.stage for step in pending]
            out.append(("+".join(step.label for step in pending),
                        beam.ParDo(OnShard(stages, progress=None if out else progress))))
            pending.clear()

    for step in steps:
        if step.batch_size is None:
            pending.append(step)
            continue
        flush()
        out.append((step.label, step.par_do(OnShard([step.stage], batch_size=step.batch_size))))
    flush()
    return out


class SaveShard(beam.DoFn):
    """Write a finished shard's outcome and marker; emit its faces, and its rejects on REJECTS."""

    def __init__(self, store: ShardStore) -> None:
        self.store = store

    def setup(self) -> None:
        self.done = Metrics.counter("shards", "processed")

    def process(self, work: ShardWork) -> Iterator[Any]:
        self.store.write_outcome(work.shard, work.elements, work.rejects)
        self.done.inc()
        yield from _outcome(work.elements, work.rejects)


class ReadShard(beam.DoFn):
    """A shard an earlier run finished: its faces, and its rejects on REJECTS, read back from its outcome."""

    def __init__(self, store: ShardStore) -> None:
        self.store = store

    def setup(self) -> None:
        self.reused = Metrics.counter("shards", "reused")

    def process(self, shard: Shard) -> Iterator[Any]:
        faces, rejects = self.store.read_outcome(shard)
        self.reused.inc()
        yield from _outcome(faces, rejects)


def _outcome(faces: list[Any], rejects: list[Reject]) -> Iterator[Any]:
    """A shard's outcome as Beam outputs: its faces on the main output, its rejects on REJECTS."""
    yield from faces
    for reject in rejects:
        yield beam.pvalue.TaggedOutput(REJECTS, reject)
