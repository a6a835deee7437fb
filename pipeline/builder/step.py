"""A step of the build's plan: a stage under its label in the graph, with how it is fed.

`batch_size` makes it a batched step (a `BatchStage` handed lists of at most that many elements), and
`accelerator` is the Beam resource hint of the step (the AU backend's GPU on a runner that honours hints).
Over the image work a step runs inside shards (`pipeline.builder.shard_steps.on_shards`); over all faces `apply`
adds it to the graph.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import apache_beam as beam

from pipeline.stages.base import REJECTS


@dataclass(frozen=True)
class Step:
    label: str
    stage: Any  # a pipeline.stages.base.Stage, or a PTransform with `ok` and REJECTS outputs (dedup)
    batch_size: int | None = None
    accelerator: str | None = None

    def apply(self, pcoll: beam.PCollection, rejects: list[beam.PCollection]) -> beam.PCollection:
        """The step's outputs over `pcoll`; its rejects are appended to `rejects`."""
        if isinstance(self.stage, beam.PTransform):
            result = pcoll | self.label >> self.stage
        else:
            if self.batch_size is not None:
                pcoll = pcoll | f"BatchFor{self.label}" >> beam.BatchElements(
                    min_batch_size=1, max_batch_size=self.batch_size)
            result = pcoll | self.label >> self.par_do(self.stage).with_outputs(REJECTS, main="ok")
        rejects.append(result[REJECTS])
        return result.ok

    def par_do(self, dofn: beam.DoFn) -> beam.ParDo:
        """`dofn` as a Beam step carrying this step's resource hint, if any."""
        step = beam.ParDo(dofn)
        return step.with_resource_hints(accelerator=self.accelerator) if self.accelerator else step
