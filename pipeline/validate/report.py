"""The outcome of a validation: `ValidationReport`, written as `result.json` and a self-contained `report.html`.

The page is the Jinja template `report.html.j2` beside this module, rendered with autoescape on: check
names and details quote the build's data.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import jinja2

from pipeline.io.build_dir import BuildDir
from pipeline.io.storage import make_dirs
from pipeline.validate.dataset_checks import Check

TEMPLATE = "report.html.j2"


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


def write_outputs(report: ValidationReport, folder: Path, build: BuildDir, suite_path: Path,
                  min_accept_rate: float, gx_result: dict[str, Any] | None) -> None:
    """`result.json` (every check, and GX's own result) and `report.html` in `folder`; sets the report's paths."""
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
    report.html_path.write_text(render_html(report, build))


def render_html(report: ValidationReport, build: BuildDir) -> str:
    """The page: failed checks first, then the passed ones, each with what was observed."""
    return _environment().get_template(TEMPLATE).render(
        name=build.name, build=str(build), success=report.success, total=len(report.checks),
        passed=sum(c.success for c in report.checks), checks=sorted(report.checks, key=lambda c: c.success))


@cache
def _environment() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.FileSystemLoader(Path(__file__).parent), autoescape=True,
                              undefined=jinja2.StrictUndefined, trim_blocks=True, keep_trailing_newline=True)
