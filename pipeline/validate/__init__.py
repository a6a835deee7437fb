"""Validate a finished build: a Great Expectations suite over the rows, plus project checks.

The rows of the build's shards are read into pandas without the image bytes; a few derived columns
(turn counts, `<image>` tokens, image byte length, AU vector length...) are added so the suite can
express conversation and image invariants as plain column expectations. The suite runs in an
ephemeral GX context (nothing is written to a GX project). Checks GX cannot express simply (manifest
accounting, rejects table, shard naming, schema, leakage, image decoding) run in Python.

Everything lands in `<out>/validation/result.json` and a self-contained `report.html`. A build
that cannot be read gives a failed report with the reason, never a traceback.

  read.py      the manifest, the rows (without image bytes) and a spread sample of decoded crops
  derive.py    the derived columns the suite checks
  suite.py     the GX suite, one check per expectation (also run in a helper process)
  project.py   the project checks (schema, shards, vocabulary, leakage, manifest, rejects, release checks)
  report.py    `ValidationReport`, result.json and report.html (the template report.html.j2)
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.domain.data import data_file
from pipeline.io.build_dir import BuildDir
from pipeline.io.storage import is_remote
from pipeline.process.warm_process import WarmProcess
from pipeline.validate import project
from pipeline.validate.dataset_checks import Check
from pipeline.validate.read import BuildReadError, Rows, load_manifest, read_rows
from pipeline.validate.report import ValidationReport, write_outputs
from pipeline.validate.suite import collect_suite, suite_checks

if TYPE_CHECKING:
    from pipeline.knowledge import Knowledge

__all__ = ["BuildReadError", "Check", "ValidationReport", "suite_checks", "validate_build"]

DEFAULT_FEATURES = data_file("record.features.json")


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
    knowledge: Knowledge | None = None,
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
    manifest = load_manifest(build, checks)
    crop_size = manifest.crop_size if manifest else None
    pending = suite_executor.submit(suite_checks, str(build), Path(suite_path)) if suite_executor else None

    rows: Rows | None = None
    try:
        rows = read_rows(build, sample_images, crop_size)
        checks.append(Check("read_build", True, f"{len(rows.frame)} rows in {len(rows.schemas)} shard(s)"))
    except BuildReadError as exc:
        checks.append(Check("read_build", False, str(exc)))

    gx_result: dict[str, Any] | None = None
    if rows is not None:
        row_checks = project.row_checks(rows, manifest, features_path or DEFAULT_FEATURES)
        release = project.release_checks(rows.frame, manifest, max_duplicate_rate, min_class_accept_ratio,
                                         reverify_rows, knowledge)
        gx_checks, gx_result = collect_suite(pending, str(build), Path(suite_path))
        checks.extend([*gx_checks, *row_checks, *release])
    elif pending is not None:
        pending.cancel()
    if manifest is not None:
        checks.extend(project.manifest_checks(build, manifest, rows, min_accept_rate))

    report = ValidationReport(success=bool(checks) and all(c.success for c in checks), checks=checks,
                              seconds=round(time.monotonic() - started, 3))
    if report_dir:
        folder: Path | None = Path(report_dir)
    else:
        folder = build.validation_dir if is_remote(build.root) or build.root.is_dir() else None
    if folder is not None:
        write_outputs(report, folder, build, Path(suite_path), min_accept_rate, gx_result)
    return report
