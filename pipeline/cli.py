"""The `fea` command: parse arguments, load params, call the library. No logic of its own.

Exit codes: 0 ok; 1 the work ran and failed (validation failed, accounting error);
2 bad usage or configuration (one-line reason on stderr); 3 a required model or file is missing.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_MISSING = 0, 1, 2, 3


def _source_spec(spec: str) -> dict:
    """`demo` | `csv:PATH[,key=value...]` -> a sources[] entry of params.yaml."""
    kind, _, rest = spec.partition(":")
    parts = [p for p in rest.split(",") if p] if rest else []
    path = parts[0] if parts and "=" not in parts[0] else None
    options = dict(p.split("=", 1) for p in parts[1 if path else 0:])
    name = options.pop("name", None) or (Path(path).name if path else kind)
    entry: dict = {"name": name, "kind": kind, "options": options}
    if path:
        entry["path"] = str(Path(path).resolve())
    return entry


def _add_build(sub) -> None:
    p = sub.add_parser("build", help="run the Beam pipeline: sources -> faces -> AUs -> instructions -> Parquet",
                       description="Build a dataset from params.yaml; flags override params.")
    p.add_argument("--params", type=Path, default=None, help="params file (default: ./params.yaml of the project)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override any param, e.g. --set align.crop_size=448 (value parsed as YAML); repeatable")
    p.add_argument("--source", action="append", default=[], metavar="SPEC",
                   help="replace the params' sources: 'demo' or 'csv:FOLDER[,image_dir=images,...]'; repeatable")
    p.add_argument("--output", "-o", help="output folder (params: output.dir)")
    p.add_argument("--limit", type=int, help="read at most N items per source")
    p.add_argument("--workers", type=int, help="Beam direct-runner workers (params: runner.num_workers)")
    p.add_argument("--running-mode", choices=["in_memory", "multi_processing", "multi_threading"],
                   help="Beam direct-runner mode (params: runner.direct_running_mode)")
    p.add_argument("--no-validate", action="store_true", help="skip Great Expectations validation after the build")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _config_from(args):
    from pipeline.config import load_config

    overrides = list(args.overrides)
    if args.source:
        overrides.append("sources=" + json.dumps([_source_spec(s) for s in args.source]))
    if args.output:
        overrides.append(f"output.dir={json.dumps(str(Path(args.output).resolve()))}")
    if args.workers:
        overrides.append(f"runner.num_workers={args.workers}")
    if args.running_mode:
        overrides.append(f"runner.direct_running_mode={args.running_mode}")
    config = load_config(args.params, overrides)
    if args.limit:
        for source in config.sources:
            source.limit = args.limit
    return config


def cmd_build(args) -> int:
    from pipeline.build import ValidationFailed, build

    config = _config_from(args)
    try:
        result = build(config, progress=not args.no_progress, validate=not args.no_validate)
    except ValidationFailed as exc:
        _print_validation(exc.report)
        print(f"fea build: not published: {exc}", file=sys.stderr)
        return EXIT_FAILED
    counts = result.manifest["counts"]
    print(f"built {result.out_dir}: {counts['inputs']} inputs = {counts['accepted_inputs']} accepted + "
          f"{counts['rejected_inputs']} rejected; {counts['rows']} rows in {result.seconds:.1f}s")
    if result.validation is not None:
        _print_validation(result.validation)
    return EXIT_OK


def _print_validation(report) -> None:
    failed = [c for c in report.checks if not c.success]
    print(f"validation {'passed' if report.success else 'FAILED'}: {len(report.checks) - len(failed)}/"
          f"{len(report.checks)} checks; report {report.html_path}")
    for check in failed[:10]:
        print(f"  failed: {check.name}: {check.detail}", file=sys.stderr)


def cmd_validate(args) -> int:
    from pipeline.config import load_config
    from pipeline.validate import validate_build

    config = load_config(args.params)
    suite = args.suite or config.resolve(config.validate_.suite)
    rate = config.validate_.min_accept_rate if args.min_accept_rate is None else args.min_accept_rate
    report = validate_build(args.dir, suite, rate, report_dir=args.report_dir)
    _print_validation(report)
    return EXIT_OK if report.success else EXIT_FAILED


def cmd_inspect(args) -> int:
    from pipeline.inspect import inspect_build

    print(inspect_build(args.dir, samples=args.samples, seed=args.seed))
    return EXIT_OK


def cmd_report(args) -> int:
    from pipeline.report import write_report

    path = write_report(args.dir, args.output, samples=args.samples)
    print(f"report written to {path}")
    return EXIT_OK


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="fea", description="Build, validate and inspect FEA instruction datasets.")
    top.add_argument("-v", "--verbose", action="store_true", help="log progress of every stage")
    sub = top.add_subparsers(dest="command", required=True)
    _add_build(sub)

    v = sub.add_parser("validate", help="validate a build with Great Expectations; non-zero exit if it fails")
    v.add_argument("dir", type=Path, help="build folder (with manifest.json)")
    v.add_argument("--params", type=Path, default=None, help="params file that names the expectation suite")
    v.add_argument("--suite", type=Path, default=None, help="expectation suite JSON (default: from params)")
    v.add_argument("--min-accept-rate", type=float, default=None,
                   help="fail if a smaller share of inputs was accepted (default: params validate.min_accept_rate)")
    v.add_argument("--report-dir", type=Path, default=None, help="where to write the result (default: DIR/validation)")

    i = sub.add_parser("inspect", help="counts, label distribution and a few rendered samples of a build")
    i.add_argument("dir", type=Path, help="build folder")
    i.add_argument("--samples", type=int, default=3, help="how many conversations to print")
    i.add_argument("--seed", type=int, default=0, help="which samples to print")

    r = sub.add_parser("report", help="HTML report with plots and sample faces of a build")
    r.add_argument("dir", type=Path, help="build folder")
    r.add_argument("--output", type=Path, default=None, help="HTML path (default: DIR/report/report.html)")
    r.add_argument("--samples", type=int, default=12, help="sample faces shown with their conversations")
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    from pipeline.config import ConfigError
    from pipeline.io.manifest import AccountingError
    from pipeline.models.files import ModelFileError
    from pipeline.sources import SourceError
    from pipeline.templating import TemplateError

    handlers = {"build": cmd_build, "validate": cmd_validate, "inspect": cmd_inspect, "report": cmd_report}
    try:
        return handlers[args.command](args)
    except (ConfigError, SourceError, TemplateError, FileExistsError) as exc:
        print(f"fea {args.command}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (ModelFileError, FileNotFoundError) as exc:
        print(f"fea {args.command}: {exc}", file=sys.stderr)
        return EXIT_MISSING
    except AccountingError as exc:
        print(f"fea {args.command}: accounting error: {exc}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
