"""The Great Expectations suite over a build's rows: one check per expectation.

The suite (the packaged expectation suite, fea_record_suite.json) runs in an ephemeral GX context, nothing is
written to a GX project. A build runs it in a helper process (`pipeline.process.warm_process.suite_process`)
on its own read of the rows, while the project checks run in the calling process.
"""

from __future__ import annotations

import json
import logging
import os
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline.io.build_dir import BuildDir
from pipeline.validate.dataset_checks import Check, clip
from pipeline.validate.read import BuildReadError, read_rows

log = logging.getLogger(__name__)


def suite_checks(build: str, suite_path: Path) -> tuple[list[Check], dict[str, Any] | None]:
    """The GX suite over the rows of the build at `build` (a path or URL), read here (what `suite_process()`
    runs). A build that cannot be read gives no checks: the caller reports that itself.

    Its frame keeps list and struct columns Arrow-backed: the suite only checks derived and scalar
    columns (and the column set), and GX copies the frame for each conditional expectation, which for
    columns of Python lists took ~2.5x as long (4.1 s against 1.8 s over 14,403 rows)."""
    try:
        rows = read_rows(BuildDir(build), 0, None, nested_as_arrow=True)
    except BuildReadError:
        return [], None
    return run_suite(rows.frame, suite_path)


def collect_suite(pending: Future | None, build: str, suite_path: Path) -> tuple[list[Check], dict[str, Any] | None]:
    """The suite's checks from the helper process (`pending`), or run here when there is none or it was lost."""
    if pending is not None:
        try:
            checks, result = pending.result()
            if checks:
                return checks, result
        except Exception as exc:  # noqa: BLE001 - a lost helper process: run the suite here instead
            log.warning("the suite process failed (%s: %s); running the suite here", type(exc).__name__, exc)
    return suite_checks(build, suite_path)


def run_suite(frame: pd.DataFrame, suite_path: Path) -> tuple[list[Check], dict[str, Any] | None]:
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
        return clip("error: " + messages[0])
    result = item.get("result") or {}
    if "observed_value" in result:
        return clip(f"observed {result['observed_value']!r}")
    if "unexpected_count" in result:
        text = f"{result['unexpected_count']} of {result.get('element_count')} unexpected"
        if result.get("partial_unexpected_list"):
            text += f", e.g. {result['partial_unexpected_list'][:5]}"
        return clip(text)
    return ""
