"""Project checks: what Great Expectations cannot express simply, checked in Python.

Over the rows: the Arrow schema against the record features (record.features.json), complete shard sets, the image
sample, faces and subjects each in one split, AU lists and vectors against the manifest's vocabulary,
corpus AU labels, answers grounded in the labels, duplicates and vanishing classes
(`pipeline.validate.dataset_checks`). Over the manifest: counts that add up, rows and rejects as written.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import pyarrow as pa

from pipeline.io.build_dir import SHARD_NAME, BuildDir
from pipeline.io.manifest import Manifest
from pipeline.validate import dataset_checks as dc
from pipeline.validate.dataset_checks import Check, clip
from pipeline.validate.read import Rows

if TYPE_CHECKING:
    from pipeline.knowledge import Knowledge

RELEASE_COLUMNS = {"sample_id", "conversations", "emotion", "au_present", "task", "subject_id", "source", "split",
                   "face_id", "image_sha256", "face_index"}


def row_checks(rows: Rows, manifest: Manifest | None, features_path: Path) -> list[Check]:
    """Schema, shards, the image sample, face leakage and the AU vocabulary."""
    frame = rows.frame
    checks = [schema_check(rows.schemas, features_path), shard_check(list(rows.schemas))]
    checks.extend(rows.image_checks)
    if {"face_id", "split"} <= set(frame.columns):
        checks.append(dc.faces_disjoint(frame))
    if manifest is not None:
        vocab = manifest.au_vocabulary
        if not vocab:
            checks.append(Check("au_vocabulary", False, "manifest has no au_vocabulary"))
        else:
            checks.append(vocabulary_check(frame, [str(v) for v in vocab]))
    return checks


def release_checks(frame: pd.DataFrame, manifest: Manifest | None, max_duplicate_rate: float, min_class_ratio: float,
                   reverify_rows: int | None = None, knowledge: Knowledge | None = None) -> list[Check]:
    """What a trainer relies on (pipeline.validate.dataset_checks), details clipped for the report. `knowledge`: the
    vocabularies and lexicon the answers were verified with (None: the packaged ones)."""
    if not RELEASE_COLUMNS <= set(frame.columns):
        return [Check("release_checks", False, f"missing columns {sorted(RELEASE_COLUMNS - set(frame.columns))}")]
    results = [dc.answers_agree_with_labels(frame, reverify_rows, knowledge), dc.subjects_disjoint(frame),
               dc.duplicate_rate(frame, max_duplicate_rate)]
    if manifest is not None:
        results.append(dc.no_class_vanishes(frame, manifest.counts, min_class_ratio))
    return [check._replace(detail=clip(check.detail)) for check in results]


def schema_check(schemas: dict[str, pa.Schema], features_path: Path) -> Check:
    """Every shard's Arrow schema is the one of the record's `datasets.Features`."""
    try:
        import datasets

        features = json.loads(Path(features_path).read_text())["features"]
        expected = datasets.Features.from_dict(features).arrow_schema.remove_metadata()
    except Exception as exc:  # noqa: BLE001
        return Check("arrow_schema", False, f"cannot load {features_path}: {type(exc).__name__}: {exc}")
    bad = []
    for name, schema in schemas.items():
        if not schema.remove_metadata().equals(expected):
            have = {f.name: str(f.type) for f in schema}
            diff = [
                f"{f.name}: {have.get(f.name, 'missing')} != {f.type}"
                for f in expected
                if have.get(f.name) != str(f.type)
            ]
            extra = sorted(set(have) - set(expected.names))
            bad.append(f"{name}: " + "; ".join(diff[:3] + ([f"extra {extra}"] if extra else []) or ["order"]))
    return Check("arrow_schema", not bad, "; ".join(bad) if bad else f"{len(schemas)} shard(s) match features")


def shard_check(names: list[str]) -> Check:
    """Shard files named `<split>-<i>-of-<n>.parquet`, with every i < n of each split there."""
    by_split: dict[str, list[tuple[int, int]]] = defaultdict(list)
    odd = []
    for name in names:
        match = SHARD_NAME.match(name)
        if match:
            by_split[match["split"]].append((int(match["index"]), int(match["total"])))
        else:
            odd.append(name)
    problems = [f"unexpected file name {n}" for n in odd]
    for split, shards in sorted(by_split.items()):
        totals = {t for _, t in shards}
        if len(totals) != 1 or sorted(i for i, _ in shards) != list(range(next(iter(totals)))):
            problems.append(f"{split}: shards {sorted(shards)} incomplete or inconsistent")
    detail = "; ".join(problems) if problems else ", ".join(f"{s}: {len(v)}" for s, v in sorted(by_split.items()))
    return Check("shards_complete", not problems, detail)


def vocabulary_check(frame: pd.DataFrame, vocab: list[str]) -> Check:
    """AU vectors as long as the vocabulary, AU lists within it, corpus AU labels consistent."""
    known = set(vocab)
    problems: list[str] = []
    if "au_intensity_len" in frame.columns:
        wrong = int((frame["au_intensity_len"].fillna(-1) != len(vocab)).sum())
        if wrong:
            problems.append(f"{wrong} row(s) with au_intensity length != {len(vocab)}")
    for col in ("au_model_intensity_len", "au_label_intensity_len"):
        if col in frame.columns:
            wrong = int(((frame[col] != len(vocab)) & frame[col].notna()).sum())
            if wrong:
                problems.append(f"{wrong} row(s) with {col.removesuffix('_len')} length != {len(vocab)}")
    for col in ("au_present", "evidence_aus", "au_model_present", "au_label_present", "au_annotated"):
        if col in frame.columns:
            unknown = Counter(a for v in frame[col] if v is not None for a in v if a not in known)
            if unknown:
                problems.append(f"{col} outside vocabulary: {dict(unknown.most_common(5))}")
    problems += corpus_au_problems(frame)
    detail = "; ".join(problems) if problems else f"{len(vocab)} AUs; vectors and AU lists consistent"
    return Check("au_vocabulary", not problems, detail)


def corpus_au_problems(frame: pd.DataFrame) -> list[str]:
    """Rows with corpus AU labels: the corpus wins where it annotates, and the label columns agree."""
    needed = {"au_present", "au_label_present", "au_annotated", "au_model_present", "au_label_source"}
    if not needed <= set(frame.columns):
        return []
    problems: list[str] = []
    labelled = frame[frame["au_label_source"].notna()]
    partial = frame[frame["au_label_source"].isna() & (frame["au_label_present"].notna()
                                                      | frame["au_annotated"].notna()
                                                      | frame["au_model_present"].notna())]
    if len(partial):
        problems.append(f"{len(partial)} row(s) with corpus/model AU columns but no au_label_source")
    wrong = 0
    for present, label, annotated, model in zip(labelled["au_present"], labelled["au_label_present"],
                                                labelled["au_annotated"], labelled["au_model_present"], strict=True):
        if label is None or annotated is None or model is None:
            wrong += 1
            continue
        scope = set(annotated)
        expected = set(label) | {a for a in model if a not in scope}
        if not set(label) <= scope or set(present) != expected:
            wrong += 1
    if wrong:
        problems.append(f"{wrong} row(s) whose au_present is not corpus-where-annotated + model elsewhere")
    return problems


def manifest_checks(build: BuildDir, manifest: Manifest, rows: Rows | None, min_accept_rate: float) -> list[Check]:
    """The manifest's counts add up, name the rows read, reach the accept rate and match the rejects table."""
    counts = manifest.counts
    inputs, accepted, rejected = counts.inputs, counts.accepted_inputs, counts.rejected_inputs
    by_reason = counts.rejected_by_reason
    checks = [
        Check(
            "manifest_accounting",
            inputs == accepted + rejected,
            f"inputs {inputs} vs accepted {accepted} + rejected {rejected} = {accepted + rejected}",
        ),
        Check(
            "manifest_rejects_by_reason",
            sum(by_reason.values()) == rejected,
            f"sum of rejected_by_reason {sum(by_reason.values())} vs rejected_inputs {rejected}",
        ),
    ]
    if rows is not None:
        n = len(rows.frame)
        checks.append(Check("manifest_rows", n == counts.rows, f"{n} rows read vs manifest {counts.rows}"))
    rate = accepted / inputs if inputs else 0.0
    checks.append(
        Check(
            "accept_rate",
            inputs > 0 and rate >= min_accept_rate,
            f"{rate:.3f} (minimum {min_accept_rate:.3f})" if inputs else "no inputs",
        )
    )
    # Every reject row, input-level or face-level, must be in the table (older manifests: input-level only).
    reject_rows = counts.reject_rows_by_reason if counts.reject_rows_by_reason is not None else by_reason
    checks.append(rejects_check(build, reject_rows))
    return checks


def rejects_check(build: BuildDir, by_reason: dict[str, int]) -> Check:
    """The rejects table holds exactly the reject rows the manifest counts, by stage and reason."""
    files = build.reject_files()
    expected = {k: v for k, v in by_reason.items() if v}
    if not files:
        return Check(
            "rejects_table",
            not expected,
            "no rejects files" + (f" but manifest has {expected}" if expected else ""),
        )
    try:
        table = build.read_table(files, ["stage", "reason"])
    except Exception as exc:  # noqa: BLE001
        return Check("rejects_table", False, f"unreadable rejects: {type(exc).__name__}: {exc}")
    found = Counter(
        f"{s}/{r}" for s, r in zip(table.column("stage").to_pylist(), table.column("reason").to_pylist(), strict=True)
    )
    ok = dict(found) == expected
    detail = f"{table.num_rows} rejects match manifest" if ok else f"rejects table {dict(found)} vs manifest {expected}"
    return Check("rejects_table", ok, clip(detail))
