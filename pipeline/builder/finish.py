"""The end of a build: its manifest and dataset card written into `<out>.partial`, the build validated (unless
told not to), and published to `<out>` only if it passed (`pipeline.io.publish`): a failed build never
replaces a good one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.card import write_dataset_card
from pipeline.config import Config
from pipeline.io.build_dir import BuildDir
from pipeline.io.manifest import Manifest
from pipeline.io.publish import publish
from pipeline.knowledge import Knowledge
from pipeline.process.warm_process import WarmProcess
from pipeline.validate import validate_build


class ValidationFailed(RuntimeError):
    """The build ran but failed validation; it stays in `<out>.partial` and is not published."""

    def __init__(self, staging: Path, report: Any) -> None:
        super().__init__(f"validation failed ({', '.join(report.failed[:5])}); build left in {staging}")
        self.staging = staging
        self.report = report


def finish(config: Config, knowledge: Knowledge, staging: BuildDir, target: BuildDir, manifest: Manifest,
           validate: bool, suite_executor: WarmProcess | None) -> Any:
    """Write, validate and publish; the validation report (None when not validated), its paths in `target`."""
    staging.write_manifest(manifest)
    write_dataset_card(staging)  # README.md: the Hugging Face dataset card of the release
    report = None
    if validate:
        v = config.validate_
        report = validate_build(
            staging, config.paths.validation_suite, v.min_accept_rate,
            max_duplicate_rate=v.max_duplicate_rate, min_class_accept_ratio=v.min_class_accept_ratio,
            reverify_rows=v.reverify_rows, suite_executor=suite_executor, knowledge=knowledge,
        )
        if not report.success:
            raise ValidationFailed(staging.root, report)
    publish(staging, target)
    if report is not None:  # the report was written inside the staging folder, which is now the release
        report.result_path = target.validation_dir / report.result_path.name
        report.html_path = target.validation_dir / report.html_path.name
    return report
