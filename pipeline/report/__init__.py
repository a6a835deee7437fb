"""`fea report`: a self-contained HTML report of a build (plots and sample faces, no external assets)."""

from __future__ import annotations

from pathlib import Path


def write_report(out_dir: Path | str, output: Path | str | None = None, samples: int = 12) -> Path:
    """Write the report of the build in `out_dir` (default `<out_dir>/report/report.html`); return its path."""
    from pipeline.report.html import write_report as _write  # matplotlib is imported only when needed

    return _write(out_dir, output, samples=samples)


__all__ = ["write_report"]
