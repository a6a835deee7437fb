"""manifest.json of a build: counts that add up (inputs = accepted + rejected), versions, params hash.

`Manifest` is its typed form (pydantic); unknown keys are kept, so an older or newer manifest still
reads. Counts are taken from the written files, not from in-flight counters, so the manifest describes
exactly what a reader will find; a mismatch with the enumerated inputs is an accounting error. The
manifest names the build's shards: it is the commit marker of a release, written last, and a reader
takes the files it names (`pipeline.io.build_dir.BuildDir`).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from pipeline.io.build_dir import BuildDir


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class Counts(_Open):
    """inputs = accepted_inputs + rejected_inputs; rejected_by_reason adds up to rejected_inputs. (Every build
    writes them all; a reader that needs them checks `model_fields_set`, validation does.)"""

    inputs: int = 0
    accepted_inputs: int = 0
    rejected_inputs: int = 0
    rows: int = 0
    rejected_by_reason: dict[str, int] = Field(default_factory=dict)
    face_rejects_of_accepted_inputs: dict[str, int] = Field(default_factory=dict)
    reject_rows_by_reason: dict[str, int] | None = None  # None in manifests older than face-level rejects
    faces: int = 0
    rows_by_split: dict[str, int] = Field(default_factory=dict)
    rows_by_task: dict[str, int] = Field(default_factory=dict)
    rows_by_emotion: dict[str, int] = Field(default_factory=dict)
    labelled_inputs_by_emotion: dict[str, int] = Field(default_factory=dict)


class ShardFile(BaseModel):
    """A Parquet file of the build, relative to its root (`data/train-00000-of-00002.parquet`)."""

    path: str
    rows: int


class Resume(BaseModel):
    """How the build's image work was split, and how much of it an earlier, interrupted run had done."""

    shards: int
    shard_size: int
    reused: int


class Manifest(_Open):
    schema_version: str = ""
    created_unix: int = 0
    sources: list[dict[str, Any]] = Field(default_factory=list)
    counts: Counts = Field(default_factory=Counts)
    stage_counters: dict[str, dict[str, int]] = Field(default_factory=dict)
    llm: dict[str, Any] | None = None
    versions: dict[str, str] = Field(default_factory=dict)
    models: dict[str, dict[str, str]] = Field(default_factory=dict)
    au_vocabulary: list[str] = Field(default_factory=list)
    au_intensity_scale: str = ""
    au_head: dict[str, Any] | None = None
    blendshape_names: list[str] = Field(default_factory=list)
    face_measure_names: list[str] = Field(default_factory=list)
    face_measures_version: str | None = None
    au_not_measured: list[str] = Field(default_factory=list)
    crop_size: int | None = None
    splits: list[str] = Field(default_factory=list)
    params: dict[str, Any] = Field(default_factory=dict)
    resume: Resume | None = None
    build_seconds: float = 0.0
    timings_s: dict[str, float] = Field(default_factory=dict)
    # The files of the release; a reader takes these rather than listing the folder (None: an older build).
    shards: list[ShardFile] | None = None
    reject_files: list[ShardFile] | None = None

    def to_json(self) -> str:
        """manifest.json's text; top-level entries that are None are left out (a missing `llm` = no LLM)."""
        data = {k: v for k, v in self.model_dump(mode="json").items() if v is not None}
        return json.dumps(data, indent=2) + "\n"


class AccountingError(RuntimeError):
    """Some input is neither in the output nor among the rejects: a silent drop."""


def _keys(table) -> list[tuple]:
    cols = [table.column(c).to_pylist() for c in ("source", "source_item", "frame_index")]
    return list(zip(*cols, strict=True))


def account(
    input_keys: Iterable[tuple], accepted_keys: Iterable[tuple], rejects: Iterable[tuple[tuple, str, str]]
) -> dict[str, Any]:
    """The accounting core, on keys only: every input is accepted or rejected, and nothing else is.

    `rejects` holds (key, stage, reason) per reject record. An input with at least one output row is
    accepted, and its reject records (other faces) are face-level rejects; otherwise its first reject
    record is the input-level reason. Raises AccountingError when an input is neither accepted nor
    rejected (lost), when a key is listed twice among the inputs, or when an output or reject names a
    key that is not an input (leaked: then inputs = accepted + rejected could not hold).
    """
    input_keys = list(input_keys)
    inputs = set(input_keys)
    accepted = set(accepted_keys)
    by_reason: Counter[str] = Counter()
    face_rejects: Counter[str] = Counter()
    reject_rows: Counter[str] = Counter()
    rejected: set[tuple] = set()
    for key, stage, reason in rejects:
        reject_rows[f"{stage}/{reason}"] += 1
        if key in accepted:  # another face of an accepted input: not an input-level reject
            face_rejects[f"{stage}/{reason}"] += 1
        elif key not in rejected:
            rejected.add(key)
            by_reason[f"{stage}/{reason}"] += 1
    lost = inputs - accepted - rejected
    unknown = (accepted | rejected) - inputs
    duplicates = len(input_keys) - len(inputs)
    if lost or unknown or duplicates:
        raise AccountingError(
            f"{len(lost)} input(s) neither accepted nor rejected (e.g. {sorted(map(str, lost))[:3]}); "
            f"{len(unknown)} output or reject key(s) that are not inputs (e.g. {sorted(map(str, unknown))[:3]}); "
            f"{duplicates} duplicate input key(s)"
        )
    return {
        "inputs": len(inputs),
        "accepted_inputs": len(accepted),
        "rejected_inputs": len(rejected),
        "rejected_by_reason": dict(sorted(by_reason.items())),
        "face_rejects_of_accepted_inputs": dict(sorted(face_rejects.items())),
        "reject_rows_by_reason": dict(sorted(reject_rows.items())),
    }


def summarize(build: BuildDir, input_keys: list[tuple]) -> dict[str, Any]:
    """The counts of a build's written files (see `account`), by split, task, emotion and text source."""
    from pipeline.io.build_dir import BuildDir

    build = build if isinstance(build, BuildDir) else BuildDir(build)
    rows = build.read_rows(["source", "source_item", "frame_index", "split", "emotion", "task", "au_present",
                            "face_id", "text_source", "grounding_verdict", "llm_status", "low_resolution",
                            "detect_attempt"])
    rejects = build.read_rejects(["source", "source_item", "frame_index", "stage", "reason"])
    reject_records: list[tuple[tuple, str, str]] = []
    if rejects is not None:
        reject_records = list(zip(_keys(rejects), rejects.column("stage").to_pylist(),
                                  rejects.column("reason").to_pylist(), strict=True))
    counts: dict[str, Any] = account(input_keys, _keys(rows) if rows is not None else [], reject_records)
    counts["rows"] = 0 if rows is None else rows.num_rows
    counts["faces"] = 0 if rows is None else len(set(rows.column("face_id").to_pylist()))
    if rows is not None:
        counts["rows_by_split"] = dict(sorted(Counter(rows.column("split").to_pylist()).items()))
        counts["rows_by_task"] = dict(sorted(Counter(rows.column("task").to_pylist()).items()))
        emotions = Counter(str(e) for e in rows.column("emotion").to_pylist())
        counts["rows_by_emotion"] = dict(sorted(emotions.items()))
        for column in ("text_source", "grounding_verdict", "llm_status"):
            counts[f"rows_by_{column}"] = dict(sorted(Counter(map(str, rows.column(column).to_pylist())).items()))
        # Per face (a face has one row per task): how it was found and whether its crop is upsampled.
        faces = dict(zip(rows.column("face_id").to_pylist(), zip(rows.column("detect_attempt").to_pylist(),
                                                                    rows.column("low_resolution").to_pylist(),
                                                                    strict=True), strict=True))
        counts["faces_by_detect_attempt"] = dict(sorted(Counter(a for a, _ in faces.values()).items()))
        counts["faces_low_resolution"] = sum(bool(low) for _, low in faces.values())
    return counts
