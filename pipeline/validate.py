"""Validate a finished build: a Great Expectations suite over the rows, plus project checks.

The rows of `<out>/data/*.parquet` are read into pandas without the image bytes; a few derived
columns (turn counts, `<image>` tokens, image byte length, AU vector length...) are added so the
suite can express conversation and image invariants as plain column expectations. The suite runs
in an ephemeral GX context (nothing is written to a GX project). Checks GX cannot express simply
(manifest accounting, rejects table, shard naming, schema, leakage, image decoding) run in Python.

Everything lands in `<out>/validation/result.json` and a self-contained `report.html`. A build
that cannot be read gives a failed report with the reason, never a traceback.
"""

from __future__ import annotations

import html
import io
import json
import logging
import os
import time
from collections import Counter, defaultdict
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.config import data_file
from pipeline.io.build_dir import SHARD_NAME, BuildDir, ManifestError, NotABuild, shard_split
from pipeline.io.manifest import Manifest
from pipeline.io.storage import is_remote, make_dirs
from pipeline.warm_process import WarmProcess

log = logging.getLogger(__name__)

DEFAULT_FEATURES = data_file("record.features.json")
IMAGE_TOKEN = "<image>"
COUNT_KEYS = ("inputs", "accepted_inputs", "rejected_inputs", "rows")


class Check(NamedTuple):
    name: str
    success: bool
    detail: str


@dataclass
class ValidationReport:
    success: bool
    checks: list[Check] = field(default_factory=list)
    result_path: Path | None = None
    html_path: Path | None = None
    seconds: float = 0.0  # wall time of the validation

    @property
    def failed(self) -> list[str]:
        return [c.name for c in self.checks if not c.success]


class BuildReadError(Exception):
    """The build's rows could not be read; the message says which file and why."""


@dataclass
class _Rows:
    frame: pd.DataFrame
    schemas: dict[str, pa.Schema]
    image_checks: list[Check]


def validate_build(
    out_dir: str | Path | BuildDir,
    suite_path: Path,
    min_accept_rate: float = 0.0,
    features_path: Path | None = None,
    sample_images: int = 50,
    report_dir: str | Path | None = None,
    max_duplicate_rate: float = 0.05,
    min_class_accept_ratio: float = 0.5,
    reverify_rows: int | None = None,
    suite_executor: WarmProcess | None = None,
) -> ValidationReport:
    """Validate the build in `out_dir` and write `result.json` and `report.html`.

    They go to `report_dir` when given (created if needed), else to `<out_dir>/validation` when
    `out_dir` exists. `features_path` defaults to the packaged record.features.json; up to
    `sample_images` crops are decoded. `reverify_rows`: how many answers the grounding verifier
    re-reads (an even spread over the rows; None = every row). `suite_executor`: a helper process
    (`suite_process()`) that runs the GX suite on its own read of the rows while this process runs
    the project checks; without it everything runs here, one after the other.
    """
    started = time.monotonic()
    build = BuildDir(out_dir)
    checks: list[Check] = []
    manifest = _load_manifest(build, checks)
    crop_size = manifest.crop_size if manifest else None
    pending = suite_executor.submit(suite_checks, str(build), Path(suite_path)) if suite_executor else None

    rows: _Rows | None = None
    try:
        rows = _read_rows(build, sample_images, crop_size)
        checks.append(Check("read_build", True, f"{len(rows.frame)} rows in {len(rows.schemas)} shard(s)"))
    except BuildReadError as exc:
        checks.append(Check("read_build", False, str(exc)))

    gx_result: dict[str, Any] | None = None
    if rows is not None:
        project = _project_row_checks(rows, manifest, features_path or DEFAULT_FEATURES)
        release = _release_checks(rows.frame, manifest, max_duplicate_rate, min_class_accept_ratio, reverify_rows)
        gx_checks, gx_result = _collect_suite(pending, str(build), Path(suite_path))
        checks.extend([*gx_checks, *project, *release])
    elif pending is not None:
        pending.cancel()
    if manifest is not None:
        checks.extend(_manifest_checks(build, manifest, rows, min_accept_rate))

    report = ValidationReport(success=bool(checks) and all(c.success for c in checks), checks=checks,
                              seconds=round(time.monotonic() - started, 3))
    if report_dir:
        folder: Path | None = Path(report_dir)
    else:
        folder = build.validation_dir if is_remote(build.root) or build.root.is_dir() else None
    if folder is not None:
        _write_outputs(report, folder, build, Path(suite_path), min_accept_rate, gx_result)
    return report


def suite_checks(build: str, suite_path: Path) -> tuple[list[Check], dict[str, Any] | None]:
    """The GX suite over the rows of the build at `build` (a path or URL), read here (what `suite_process()`
    runs). A build that cannot be read gives no checks: the caller reports that itself.

    Its frame keeps list and struct columns Arrow-backed: the suite only checks derived and scalar
    columns (and the column set), and GX copies the frame for each conditional expectation, which for
    columns of Python lists took ~2.5x as long (4.1 s against 1.8 s over 14,403 rows)."""
    try:
        rows = _read_rows(BuildDir(build), 0, None, nested_as_arrow=True)
    except BuildReadError:
        return [], None
    return _run_suite(rows.frame, suite_path)


def _collect_suite(pending: Future | None, build: str, suite_path: Path):
    if pending is not None:
        try:
            checks, result = pending.result()
            if checks:
                return checks, result
        except Exception as exc:  # noqa: BLE001 - a lost helper process: run the suite here instead
            log.warning("the suite process failed (%s: %s); running the suite here", type(exc).__name__, exc)
    return suite_checks(build, suite_path)


# --------------------------------------------------------------------------------------------- reading


def _load_manifest(build: BuildDir, checks: list[Check]) -> Manifest | None:
    try:
        manifest = build.manifest
    except NotABuild:
        checks.append(Check("manifest", False, f"missing {build.manifest_path}"))
        return None
    except (OSError, ManifestError) as exc:
        checks.append(Check("manifest", False, f"unreadable {build.manifest_path}: {exc}"))
        return None
    counts = manifest.counts
    missing = [k for k in COUNT_KEYS if k not in counts.model_fields_set]
    if "counts" not in manifest.model_fields_set or missing:
        checks.append(Check("manifest", False, f"counts missing: {missing}"))
        return None
    checks.append(Check("manifest", True, f"counts: { {k: getattr(counts, k) for k in COUNT_KEYS} }"))
    return manifest


def _read_rows(build: BuildDir, sample_images: int, crop_size: int | None, nested_as_arrow: bool = False) -> _Rows:
    try:
        files = build.shards()
    except OSError as exc:
        raise BuildReadError(f"cannot list {build.data_dir}: {type(exc).__name__}: {exc}") from None
    if not files:
        missing = not build.remote and not build.data_dir.is_dir()
        raise BuildReadError(f"missing data directory: {build.data_dir}" if missing
                             else f"no parquet files in {build.data_dir}")
    try:
        pfiles = {f.name: build.parquet(f) for f in files}
    except Exception as exc:  # noqa: BLE001 - any unreadable file is reported, not raised
        raise BuildReadError(f"unreadable parquet: {type(exc).__name__}: {exc}") from None

    total = sum(pf.metadata.num_rows for pf in pfiles.values())
    wanted = set(np.linspace(0, total - 1, min(sample_images, total)).astype(int).tolist()) if total else set()
    frames: list[pd.DataFrame] = []
    decoded, undecodable, offset = 0, 0, 0
    problems: list[str] = []
    for name, pf in pfiles.items():
        file_start = offset
        try:
            columns = [c for c in pf.schema_arrow.names if c != "image"]
            table = pf.read(columns=columns)
            frame = _derive(table, shard_split(name), nested_as_arrow)
            lengths: list[int | None] = []
            if "image" in pf.schema_arrow.names:
                for group in range(pf.num_row_groups):
                    images = pf.read_row_group(group, columns=["image"]).column("image").combine_chunks()
                    data = images.field("bytes")
                    lengths.extend(pc.binary_length(data).to_pylist())
                    for i in sorted(j - offset for j in wanted if offset <= j < offset + len(data)):
                        decoded += 1
                        problem = _decode_problem(data[i].as_py(), crop_size)
                        if problem:
                            undecodable += 1
                            problems.append(f"{name} row {offset + i - file_start}: {problem}")
                    offset += len(data)
            else:
                lengths = [None] * table.num_rows
                offset += table.num_rows
                problems.append(f"{name}: no image column")
            frame["image_bytes_len"] = pd.array(lengths, dtype="Int64")
        except Exception as exc:  # noqa: BLE001
            raise BuildReadError(f"unreadable parquet {name}: {type(exc).__name__}: {exc}") from None
        frames.append(frame)

    size_note = f" at {crop_size}x{crop_size}" if crop_size else ""
    detail = f"{decoded - undecodable}/{decoded} sampled images decode{size_note}"
    if problems:
        detail += "; " + "; ".join(problems[:5])
    image_check = Check("images_decode", decoded > 0 and not problems, detail)
    return _Rows(pd.concat(frames, ignore_index=True), {n: pf.schema_arrow for n, pf in pfiles.items()}, [image_check])


def _decode_problem(data: bytes | None, crop_size: int | None) -> str | None:
    from PIL import Image

    if not data:
        return "no image bytes"
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            size = img.size
    except Exception as exc:  # noqa: BLE001
        return f"does not decode ({type(exc).__name__}: {exc})"
    if crop_size and size != (crop_size, crop_size):
        return f"size {size[0]}x{size[1]}, expected {crop_size}x{crop_size}"
    return None


def _derive(table: pa.Table, shard_split: str, nested_as_arrow: bool = False) -> pd.DataFrame:
    """Rows as pandas plus the derived columns the suite expects. `nested_as_arrow`: list and struct
    columns as pandas ArrowDtype columns instead of Python objects."""
    frame = table.to_pandas(types_mapper=_arrow_if_nested if nested_as_arrow else None)
    n = table.num_rows
    frame["shard_split"] = shard_split
    convs = table.column("conversations").to_pylist() if "conversations" in table.column_names else [None] * n
    stats = [_conversation_stats(c) for c in convs]
    for i, col in enumerate(
        [
            "n_turns",
            "n_image_tokens",
            "image_in_first_turn",
            "first_role",
            "last_role",
            "roles_alternate",
            "n_empty_turns",
        ]
    ):
        frame[col] = [s[i] for s in stats]
    au = table.column("au_intensity").to_pylist() if "au_intensity" in table.column_names else [None] * n
    frame["au_intensity_len"] = pd.array([None if v is None else len(v) for v in au], dtype="Int64")
    frame["au_intensity_min"] = [min(v) if v and None not in v else None for v in au]
    frame["au_intensity_max"] = [max(v) if v and None not in v else None for v in au]
    frame["au_intensity_min"] = frame["au_intensity_min"].astype("float64")
    frame["au_intensity_max"] = frame["au_intensity_max"].astype("float64")
    for col in ("au_model_intensity", "au_label_intensity"):
        values = table.column(col).to_pylist() if col in table.column_names else [None] * n
        frame[f"{col}_len"] = pd.array([None if v is None else len(v) for v in values], dtype="Int64")
        # au_label_intensity holds null for AUs the corpus does not code: range over the coded ones.
        coded = [None if v is None else [x for x in v if x is not None] for v in values]
        frame[f"{col}_min"] = pd.array([min(v) if v else None for v in coded], dtype="Float64").astype("float64")
        frame[f"{col}_max"] = pd.array([max(v) if v else None for v in coded], dtype="Float64").astype("float64")
    blend = table.column("blendshapes").to_pylist() if "blendshapes" in table.column_names else [None] * n
    frame["blendshapes_len"] = pd.array([None if v is None else len(v) for v in blend], dtype="Int64")
    return frame


def _arrow_if_nested(arrow_type: pa.DataType) -> pd.ArrowDtype | None:
    return pd.ArrowDtype(arrow_type) if pa.types.is_nested(arrow_type) else None


def _conversation_stats(conv: list[dict[str, Any]] | None) -> tuple[Any, ...]:
    if not conv:
        return (0, 0, False, None, None, False, 0)
    roles = [t.get("role") for t in conv]
    contents = [t.get("content") or "" for t in conv]
    tokens = sum(c.count(IMAGE_TOKEN) for c in contents)
    alternate = all(r in ("user", "assistant") for r in roles) and all(
        a != b for a, b in zip(roles, roles[1:], strict=False)
    )
    empty = sum(1 for c in contents if not c.strip())
    return (len(conv), tokens, IMAGE_TOKEN in contents[0], roles[0], roles[-1], alternate, empty)


# ------------------------------------------------------------------------------------------ GX suite


def _run_suite(frame: pd.DataFrame, suite_path: Path) -> tuple[list[Check], dict[str, Any] | None]:
    """Run the suite over `frame` in an ephemeral GX context; one check per expectation."""
    try:
        suite_dict = json.loads(suite_path.read_text())
    except (OSError, ValueError) as exc:
        return [Check("suite", False, f"cannot read suite {suite_path}: {exc}")], None

    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx

    # GX sets INFO on this logger itself and announces its temporary docs folder there.
    logging.getLogger("great_expectations.data_context.types.base").setLevel(logging.WARNING)
    from great_expectations.data_context.types.base import ProgressBarsConfig

    try:
        context = gx.get_context(mode="ephemeral")
        context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
        suite = context.suites.add(gx.ExpectationSuite(**suite_dict))
        batch = context.data_sources.add_pandas("build").add_dataframe_asset("rows")
        definition = context.validation_definitions.add(
            gx.ValidationDefinition(
                name="fea_build", data=batch.add_batch_definition_whole_dataframe("all"), suite=suite
            )
        )
        # BASIC: counts and up to 20 unexpected values per expectation; SUMMARY adds value counts (~50% slower).
        result = definition.run(batch_parameters={"dataframe": frame}, result_format="BASIC")
    except Exception as exc:  # noqa: BLE001 - a broken suite is a failed validation, not a crash
        return [Check("suite", False, f"{type(exc).__name__}: {exc}")], None

    result_dict = result.to_json_dict()
    checks = [Check("suite", True, f"{suite.name}: {len(result.results)} expectations")]
    for item in result_dict["results"]:
        config = item["expectation_config"]
        checks.append(Check(_expectation_name(config), bool(item["success"]), _observed(item)))
    return checks, result_dict


def _expectation_name(config: dict[str, Any]) -> str:
    kwargs = config.get("kwargs", {})
    pair = [str(kwargs[k]) for k in ("column_A", "column_B") if k in kwargs]
    cols = kwargs.get("column") or ",".join(pair or kwargs.get("column_list", []))
    name = f"{config['type']}[{cols}]" if cols else config["type"]
    condition = _condition_text(kwargs.get("row_condition"))
    return f"{name} where {condition}" if condition else name


def _condition_text(condition: Any) -> str:
    """Readable form of a serialized GX row condition (comparison, nullity, and/or, pass-through)."""
    if not condition:
        return ""
    if not isinstance(condition, dict):
        return str(condition)
    kind = condition.get("type")
    column = (condition.get("column") or {}).get("name")
    if kind == "comparison":
        return f"{column} {condition.get('operator')} {condition.get('parameter')!r}"
    if kind == "nullity":
        return f"{column} is {'' if condition.get('is_null') else 'not '}null"
    if kind in ("and", "or"):
        return f" {kind} ".join(f"({_condition_text(c)})" for c in condition.get("conditions", []))
    return str(condition.get("pass_through_filter") or json.dumps(condition, default=str))


def _observed(item: dict[str, Any]) -> str:
    info = item.get("exception_info") or {}
    messages = (
        [info.get("exception_message")]
        if "raised_exception" in info
        else [v.get("exception_message") for v in info.values() if isinstance(v, dict)]
    )
    messages = [m for m in messages if m]
    if messages:
        return _clip("error: " + messages[0])
    result = item.get("result") or {}
    if "observed_value" in result:
        return _clip(f"observed {result['observed_value']!r}")
    if "unexpected_count" in result:
        text = f"{result['unexpected_count']} of {result.get('element_count')} unexpected"
        if result.get("partial_unexpected_list"):
            text += f", e.g. {result['partial_unexpected_list'][:5]}"
        return _clip(text)
    return ""


def _clip(text: str, limit: int = 400) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


# -------------------------------------------------------------------------------------- project checks


def _project_row_checks(rows: _Rows, manifest: Manifest | None, features_path: Path) -> list[Check]:
    frame = rows.frame
    checks = [_schema_check(rows.schemas, features_path), _shard_check(list(rows.schemas))]
    checks.extend(rows.image_checks)

    if {"face_id", "split"} <= set(frame.columns):
        splits = frame.groupby("face_id")["split"].nunique()
        leaked = splits[splits > 1]
        checks.append(
            Check(
                "no_face_leakage",
                leaked.empty,
                f"{len(leaked)} face(s) in more than one split"
                + (f", e.g. {list(leaked.index[:3])}" if len(leaked) else ""),
            )
        )

    if manifest is not None:
        vocab = manifest.au_vocabulary
        if not vocab:
            checks.append(Check("au_vocabulary", False, "manifest has no au_vocabulary"))
        else:
            checks.append(_vocabulary_check(frame, [str(v) for v in vocab]))
    return checks


def _release_checks(
    frame: pd.DataFrame, manifest: Manifest | None, max_duplicate_rate: float, min_class_ratio: float,
    reverify_rows: int | None = None,
) -> list[Check]:
    from pipeline import dataset_checks as dc

    needed = {"sample_id", "conversations", "emotion", "au_present", "task", "subject_id", "source", "split",
              "face_id", "image_sha256", "face_index"}
    if not needed <= set(frame.columns):
        return [Check("release_checks", False, f"missing columns {sorted(needed - set(frame.columns))}")]
    results = [dc.answers_agree_with_labels(frame, reverify_rows), dc.subjects_disjoint(frame),
               dc.duplicate_rate(frame, max_duplicate_rate)]
    if manifest is not None:
        results.append(dc.no_class_vanishes(frame, manifest.model_dump(), min_class_ratio))
    return [Check(name, ok, _clip(detail)) for name, ok, detail in results]


def _schema_check(schemas: dict[str, pa.Schema], features_path: Path) -> Check:
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


def _shard_check(names: list[str]) -> Check:
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


def _vocabulary_check(frame: pd.DataFrame, vocab: list[str]) -> Check:
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
    problems += _corpus_au_problems(frame)
    detail = "; ".join(problems) if problems else f"{len(vocab)} AUs; vectors and AU lists consistent"
    return Check("au_vocabulary", not problems, detail)


def _corpus_au_problems(frame: pd.DataFrame) -> list[str]:
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


def _manifest_checks(build: BuildDir, manifest: Manifest, rows: _Rows | None, min_accept_rate: float) -> list[Check]:
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
    checks.append(_rejects_check(build, reject_rows))
    return checks


def _rejects_check(build: BuildDir, by_reason: dict[str, int]) -> Check:
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
    return Check("rejects_table", ok, _clip(detail))


# --------------------------------------------------------------------------------------------- outputs


def _write_outputs(
    report: ValidationReport,
    folder: Path,
    build: BuildDir,
    suite_path: Path,
    min_accept_rate: float,
    gx_result: dict[str, Any] | None,
) -> None:
    make_dirs(folder)
    payload = {
        "success": report.success,
        "build": str(build),
        "suite": str(suite_path),
        "min_accept_rate": min_accept_rate,
        "failed": report.failed,
        "seconds": report.seconds,
        "checks": [c._asdict() for c in report.checks],
        "gx": gx_result,
    }
    report.result_path = folder / "result.json"
    report.result_path.write_text(json.dumps(payload, indent=1, default=str) + "\n")
    report.html_path = folder / "report.html"
    report.html_path.write_text(_html(report, build))


def _html(report: ValidationReport, out_dir: BuildDir) -> str:
    passed = sum(c.success for c in report.checks)
    status = "PASSED" if report.success else "FAILED"
    rows = "\n".join(
        f'<tr class="{"ok" if c.success else "bad"}"><td>{"pass" if c.success else "FAIL"}</td>'
        f"<td>{html.escape(c.name)}</td><td>{html.escape(c.detail)}</td></tr>"
        for c in sorted(report.checks, key=lambda c: c.success)
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Validation: {html.escape(out_dir.name)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; }}
table {{ border-collapse: collapse; width: 100%; }}
td, th {{ border: 1px solid #ccc; padding: 4px 8px; text-align: left; vertical-align: top; }}
tr.ok td:first-child {{ color: #1a7f37; }} tr.bad td:first-child {{ color: #cf222e; font-weight: bold; }}
tr.bad {{ background: #fff0f0; }} td:nth-child(3) {{ font-family: monospace; font-size: 90%; }}
</style></head><body>
<h1>Validation {status}</h1>
<p>Build <code>{html.escape(str(out_dir))}</code>: {passed} of {len(report.checks)} checks passed.</p>
<table><tr><th>status</th><th>check</th><th>observed</th></tr>
{rows}
</table></body></html>
"""
