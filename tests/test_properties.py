"""Property tests (hypothesis): the accounting never loses or invents an input, a stage never lets one
element kill a run or leave both ways, and splits are a pure function of their key."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from pipeline.domain.record import Reject, Sample, SourceItem
from pipeline.domain.splits import split_for
from pipeline.io.accounting import AccountingError, account, summarize
from pipeline.io.schema import arrow_schema
from pipeline.stages.base import REJECTS, Stage

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
REASONS = [("read", "unknown_label"), ("decode", "corrupt_image"), ("detect", "no_face"),
           ("align", "extreme_pose"), ("align", "internal_error"), ("render", "no_renderable_task")]

# ----------------------------------------------------------------------------- (a) accounting

keys = st.tuples(
    st.sampled_from(["demo", "wild", "csv"]),
    st.text(st.characters(codec="utf-8"), min_size=1, max_size=12),
    st.one_of(st.none(), st.integers(0, 300)),
)


@st.composite
def partitions(draw):
    """Input keys split into accepted and rejected; 1..3 reject records per rejected key, and face-level
    reject records for some accepted keys (other faces of an accepted input)."""
    inputs = draw(st.lists(keys, unique=True, max_size=25))
    fate = draw(st.lists(st.booleans(), min_size=len(inputs), max_size=len(inputs)))
    accepted = [k for k, ok in zip(inputs, fate, strict=True) if ok]
    rejected = [k for k, ok in zip(inputs, fate, strict=True) if not ok]
    records = []
    for key in rejected:
        for _ in range(draw(st.integers(1, 3))):
            records.append((key, *draw(st.sampled_from(REASONS))))
    for key in accepted:
        for _ in range(draw(st.integers(0, 2))):
            records.append((key, *draw(st.sampled_from(REASONS))))
    records = draw(st.permutations(records))
    rows = [k for k in accepted for _ in range(draw(st.integers(1, 3)))]  # several rows (tasks) per input
    return inputs, accepted, rejected, rows, records


def check_counts(counts: dict, inputs, accepted, rejected, records) -> None:
    assert counts["inputs"] == len(inputs) == counts["accepted_inputs"] + counts["rejected_inputs"]
    assert counts["accepted_inputs"] == len(accepted)
    assert counts["rejected_inputs"] == len(rejected) == sum(counts["rejected_by_reason"].values())
    assert sum(counts["reject_rows_by_reason"].values()) == len(records)
    face_level = sum(1 for key, _, _ in records if key in set(accepted))
    assert sum(counts["face_rejects_of_accepted_inputs"].values()) == face_level


@SETTINGS
@given(partitions())
def test_any_partition_adds_up(case) -> None:
    inputs, accepted, rejected, rows, records = case
    counts = account(inputs, rows, records)
    check_counts(counts, inputs, accepted, rejected, records)
    # The input-level reason of a rejected key is that of its first reject record.
    first = {}
    for key, stage, reason in records:
        if key not in set(accepted):
            first.setdefault(key, f"{stage}/{reason}")
    assert counts["rejected_by_reason"] == dict(sorted(Counter(first.values()).items()))


@SETTINGS
@given(partitions(), st.data())
def test_a_lost_key_raises(case, data) -> None:
    inputs, accepted, rejected, rows, records = case
    assume(inputs)
    lost = data.draw(st.sampled_from(inputs))
    rows = [k for k in rows if k != lost]
    records = [r for r in records if r[0] != lost]
    with pytest.raises(AccountingError, match="1 input"):
        account(inputs, rows, records)


@SETTINGS
@given(partitions(), st.data())
def test_a_leaked_or_duplicated_key_raises(case, data) -> None:
    inputs, accepted, rejected, rows, records = case
    stranger = data.draw(keys.filter(lambda k: k not in set(inputs)))
    with pytest.raises(AccountingError, match="not inputs"):
        if data.draw(st.booleans()):
            account(inputs, [*rows, stranger], records)  # an output row of no input
        else:
            account(inputs, rows, [*records, (stranger, "detect", "no_face")])  # a reject of no input
    assume(inputs)
    with pytest.raises(AccountingError, match="duplicate"):
        account([*inputs, data.draw(st.sampled_from(inputs))], rows, records)


def _write(folder: Path, schema: pa.Schema, rows: list[dict], shards: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(shards):
        part = rows[i::shards]
        columns = {name: [row.get(name) for row in part] for name in schema.names}
        pq.write_table(pa.Table.from_pydict(columns, schema=schema), folder / f"part-{i:05d}-of-{shards:05d}.parquet")


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(partitions(), st.integers(1, 3))
def test_summarize_on_parquet_adds_up(tmp_path_factory, case, shards) -> None:
    """The same invariant through the files a build writes (record and reject Arrow schemas)."""
    inputs, accepted, rejected, rows, records = case
    out = tmp_path_factory.mktemp("build")
    data = [{"source": s, "source_item": i, "frame_index": f, "face_id": f"{s}|{i}|{f}", "split": "train",
             "task": "fe_recognition", "emotion": None, "au_present": []} for s, i, f in rows]
    rejects = [{"source": s, "source_item": i, "frame_index": f, "stage": stage, "reason": reason, "detail": ""}
               for (s, i, f), stage, reason in records]
    if data:
        _write(out / "data", arrow_schema("record"), data, shards)
    _write(out / "rejects", arrow_schema("reject"), rejects, shards)
    counts = summarize(out, inputs)
    check_counts(counts, inputs, accepted, rejected, records)
    assert counts["rows"] == len(rows) and counts["faces"] == len(accepted)


# ----------------------------------------------------------------------------- (b) Stage.process


class Boom(Exception):
    pass


class Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("__str__ fails too")


EXCEPTIONS = [ValueError, KeyError, TypeError, ZeroDivisionError, OSError, MemoryError, RecursionError,
              AssertionError, IndexError, UnicodeError, NotImplementedError, Boom, Unprintable]


class Scripted(Stage):
    """A stage whose `run` yields a scripted mix of outputs and rejects, then maybe raises."""

    name = "scripted"

    def __init__(self, script: list[str], exc: BaseException | None) -> None:
        super().__init__()
        self.script = script
        self.exc = exc

    def run(self, element):
        for i, what in enumerate(self.script):
            yield self.reject(element, f"reason{i}", "scripted") if what == "reject" else Sample(element, face_index=i)
        if self.exc is not None:
            raise self.exc


@SETTINGS
@given(
    st.lists(st.sampled_from(["output", "reject"]), max_size=4),
    st.one_of(st.none(), st.builds(lambda cls, text: cls(text), st.sampled_from(EXCEPTIONS), st.text(max_size=30))),
)
def test_process_never_raises_and_never_emits_both(script, exc) -> None:
    item = SourceItem("test", "x.jpg", "/nowhere/x.jpg")
    emitted = list(Scripted(script, exc).process(item))  # must not raise
    tagged = [e for e in emitted if isinstance(e, beam.pvalue.TaggedOutput)]
    assert all(e.tag == REJECTS for e in tagged)
    rejects = [e.value for e in tagged]
    outputs = [e for e in emitted if not isinstance(e, beam.pvalue.TaggedOutput)]
    assert emitted, "an element must never vanish"
    assert not (rejects and outputs), "an element is either emitted or rejected, never both"
    assert all(isinstance(r, Reject) and r.source_item == "x.jpg" and r.stage == "scripted" for r in rejects)
    if exc is not None:
        (reject,) = rejects
        assert reject.reason == "internal_error"
        assert reject.detail.startswith(type(exc).__name__)
        if not isinstance(exc, Unprintable):
            assert str(exc)[:100] in reject.detail
    elif script and set(script) == {"output"}:
        assert len(outputs) == len(script) and all(isinstance(o, Sample) for o in outputs)
    elif script and set(script) == {"reject"}:
        assert [r.reason for r in rejects] == [f"reason{i}" for i in range(len(script))]
    else:  # nothing, or a mix: one internal_error reject that says so
        (reject,) = rejects
        assert reject.reason == "internal_error"


# ----------------------------------------------------------------------------- (c) split_for

split_names = st.text(st.characters(categories=["Ll", "Lu", "Nd"]), min_size=1, max_size=8)


@st.composite
def ratios(draw):
    names = draw(st.lists(split_names, min_size=1, max_size=5, unique=True))
    weights = draw(st.lists(st.integers(0, 10), min_size=len(names), max_size=len(names)))
    assume(sum(weights) > 0)
    return {n: w / sum(weights) for n, w in zip(names, weights, strict=True)}


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40), ratios(), st.integers(-(2**31), 2**31))
def test_split_for_is_deterministic_and_configured(key, split_ratios, seed) -> None:
    name = split_for(key, split_ratios, seed)
    assert name in split_ratios
    assert split_for(key, dict(reversed(split_ratios.items())), seed) == name  # dict order is irrelevant
    assert split_for(key, split_ratios, seed) == name
    if len([r for r in split_ratios.values() if r > 0]) == 1:
        assert split_ratios[name] > 0  # the only split with a share gets everything


def test_split_for_is_stable_across_runs() -> None:
    """Pinned values: the hash must not change between machines, processes or Python versions."""
    assert [split_for(f"subject:demo:{i}", {"train": 0.8, "test": 0.2}, 0) for i in range(12)] == [
        "train", "train", "train", "train", "train", "train", "train", "test", "train", "train", "test", "test"]
    assert [split_for(f"image:{i}", {"train": 0.5, "validation": 0.25, "test": 0.25}, 7) for i in range(8)] == [
        "test", "validation", "validation", "train", "validation", "train", "validation", "test"]
