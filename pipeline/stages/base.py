"""What every stage shares: reject routing, counters, and a guard so one bad element never kills a run.

A stage implements `run(element, *side_inputs)`, a generator that yields the next element(s) or a `Reject`.
`process` (Beam's entry point) sends rejects to the REJECTS tagged output, counts everything
under the stage's name, and turns an unexpected exception into an `internal_error` reject with
the exception's text, so it is visible in the rejects table rather than lost or fatal. An element
always leaves a stage as its outputs or as one reject: never both, never neither.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import apache_beam as beam
from apache_beam.metrics import Metrics

from pipeline.record import Reject, Sample, SourceItem

REJECTS = "rejects"


def describe(exc: BaseException) -> str:
    """`Type: message` of an exception, even one whose __str__ itself fails."""
    try:
        text = str(exc)
    except Exception:  # noqa: BLE001 - the reject must be written whatever the exception is
        text = "<exception text unavailable>"
    return f"{type(exc).__name__}: {text}"


def item_of(element: Any) -> SourceItem:
    return element if isinstance(element, SourceItem) else element.item


class Stage(beam.DoFn):
    """Base DoFn. Subclasses set `name` and `reasons` and implement `run`."""

    name = "stage"
    reasons: tuple[str, ...] = ()

    def __init__(self) -> None:
        super().__init__()
        self._counters: dict[str, Any] = {}

    def count(self, what: str, n: int = 1) -> None:
        counter = self._counters.get(what)
        if counter is None:
            counter = self._counters[what] = Metrics.counter(self.name, what)
        counter.inc(n)

    def reject(self, element: Any, reason: str, detail: str = "") -> Reject:
        sha = element.image_sha256 if isinstance(element, Sample) else None
        return Reject.of(item_of(element), self.name, reason, detail, sha)

    def run(self, element: Any, *side_inputs: Any) -> Iterator[Any]:
        raise NotImplementedError

    # *side_inputs stays unannotated: Beam would read `Any` there as the hint of the whole tuple and refuse it.
    def process(self, element: Any, *side_inputs) -> Iterator[Any]:
        self.count("in")
        try:
            # Collected first: an element that fails half-way must not be both emitted and rejected.
            outputs = list(self.run(element, *side_inputs))
        except Exception as exc:  # noqa: BLE001 - any failure of one element becomes its reject
            outputs = [self.reject(element, "internal_error", describe(exc))]
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
