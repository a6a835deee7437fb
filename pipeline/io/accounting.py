"""Accounting of a build: every input is accepted or rejected, and nothing else is; the counts of its files.

Counts are read back from the written files, not from in-flight counters, so the manifest (pipeline.io.manifest)
describes exactly what a reader will find; a mismatch with the enumerated inputs is an AccountingError.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

from pipeline.io.build_dir import BuildDir


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
