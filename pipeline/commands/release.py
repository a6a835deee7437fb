"""`fea validate`, `fea inspect`, `fea report`, `fea export`: reading a finished build."""

from __future__ import annotations

import sys
from pathlib import Path

from pipeline.commands.args import BUILD_HELP, COUNT, EXIT_FAILED, EXIT_OK, POSITIVE, fraction, output_path


def add_validate(sub) -> None:
    v = sub.add_parser("validate", help="validate a build with Great Expectations; non-zero exit if it fails")
    v.add_argument("dir", help=BUILD_HELP)
    v.add_argument("--params", type=Path, default=None,
                   help="params file naming the expectation suite and the vocabularies the answers are checked with")
    v.add_argument("--suite", type=Path, default=None, help="expectation suite JSON (default: from params)")
    v.add_argument("--min-accept-rate", type=fraction, default=None,
                   help="fail if a smaller share of inputs was accepted (default: params validate.min_accept_rate)")
    v.add_argument("--report-dir", type=output_path, default=None,
                   help="where to write the result (default: DIR/validation)")
    v.add_argument("--reverify-rows", type=POSITIVE, default=None,
                   help="re-read only this many answers with the grounding verifier, spread over the rows "
                        "(default: every row; a build's own validation uses params validate.reverify_rows)")
    v.set_defaults(handler=cmd_validate)


def print_validation(report) -> None:
    failed = [c for c in report.checks if not c.success]
    print(f"validation {'passed' if report.success else 'FAILED'}: {len(report.checks) - len(failed)}/"
          f"{len(report.checks)} checks; report {report.html_path}")
    for check in failed[:10]:
        print(f"  failed: {check.name}: {check.detail}", file=sys.stderr)


def cmd_validate(args) -> int:
    from pipeline.config import load_config
    from pipeline.knowledge import Knowledge
    from pipeline.process.warm_process import suite_process
    from pipeline.validate import validate_build

    config = load_config(args.params)
    knowledge = Knowledge.load(config)  # the vocabularies the answers are re-verified with, as the build's
    suite = args.suite or config.paths.validation_suite
    rate = config.validate_.min_accept_rate if args.min_accept_rate is None else args.min_accept_rate
    v = config.validate_
    with suite_process() as suite_executor:  # the GX suite runs beside the project checks
        report = validate_build(
            args.dir, suite, rate, report_dir=args.report_dir, max_duplicate_rate=v.max_duplicate_rate,
            min_class_accept_ratio=v.min_class_accept_ratio, reverify_rows=args.reverify_rows,
            suite_executor=suite_executor, knowledge=knowledge)
    print_validation(report)
    return EXIT_OK if report.success else EXIT_FAILED


def add_inspect(sub) -> None:
    i = sub.add_parser("inspect", help="counts, label distribution and a few rendered samples of a build")
    i.add_argument("dir", help=BUILD_HELP)
    i.add_argument("--samples", type=COUNT, default=3, help="how many conversations to print")
    i.add_argument("--seed", type=int, default=0, help="which samples to print")
    i.set_defaults(handler=cmd_inspect)


def cmd_inspect(args) -> int:
    from pipeline.report.text import inspect_build

    print(inspect_build(args.dir, samples=args.samples, seed=args.seed))
    return EXIT_OK


def add_report(sub) -> None:
    r = sub.add_parser("report", help="HTML report with plots and sample faces of a build")
    r.add_argument("dir", help=BUILD_HELP)
    r.add_argument("--output", type=output_path, default=None, help="HTML path (default: DIR/report/report.html)")
    r.add_argument("--samples", type=COUNT, default=12, help="sample faces shown with their conversations")
    r.set_defaults(handler=cmd_report)


def cmd_report(args) -> int:
    from pipeline.report import write_report

    path = write_report(args.dir, args.output, samples=args.samples)
    print(f"report written to {path}")
    return EXIT_OK


def add_export(sub) -> None:
    p = sub.add_parser(
        "export", help="write a build's rows as LLaVA JSON, ShareGPT JSONL, OpenAI chat JSONL or HF Parquet",
        description="Export a build to a trainer format. llava: SPLIT.json + images/; sharegpt: SPLIT.jsonl + "
                    "images/ + dataset_info.json (LLaMA-Factory); openai: SPLIT.jsonl with base64 images (+ "
                    "SPLIT.metadata.jsonl with the labels); hf: data/SPLIT-*.parquet with messages + images "
                    "columns (TRL SFTTrainer layout). Rows exported per split are counted against the shards "
                    "and written to OUTPUT/export_manifest.json.")
    p.add_argument("dir", help=BUILD_HELP)
    p.add_argument("--format", "-f", required=True, choices=["llava", "sharegpt", "openai", "hf"],
                   help="target format")
    p.add_argument("--output", "-o", type=output_path, required=True,
                   help="export folder (outside the build; an earlier export there is replaced)")
    p.add_argument("--split", help="comma-separated splits to export (default: all in the build)")
    p.add_argument("--images", choices=["copy", "none"], default="copy",
                   help="llava/sharegpt: write the crops to OUTPUT/images (copy, default) or only reference them")
    p.add_argument("--limit", type=POSITIVE, help="export at most N rows per split")
    p.set_defaults(handler=cmd_export)


def cmd_export(args) -> int:
    from pipeline.export import export

    splits = [s for s in args.split.split(",") if s] if args.split else None
    result = export(args.dir, args.format, args.output, splits=splits, images=args.images, limit=args.limit)
    for split, c in result["splits"].items():
        print(f"{split}: {c['rows_exported']} rows exported ({c['rows_in_shards']} in the shards)")
    print(f"{result['format']} export written to {args.output} ({result['image_files']} image files); "
          f"see {args.output / 'export_manifest.json'}")
    return EXIT_OK
