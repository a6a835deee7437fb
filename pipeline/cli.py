"""The `fea` command: parse arguments, load params, call the library. No logic of its own.

Exit codes: 0 ok; 1 the work ran and failed (validation failed, accounting error);
2 bad usage or configuration (one-line reason on stderr); 3 a required model or file is missing.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import logging
import os
import sys
from pathlib import Path
from typing import NoReturn

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_MISSING = 0, 1, 2, 3


class _Parser(argparse.ArgumentParser):
    """argparse with the exit-code contract above: a usage error is one line on stderr and exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: {message} (see {self.prog} --help)\n")


def _at_least(minimum: int):
    """An argparse type: an integer >= minimum (argparse alone accepts -1 for a count)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    return parse


def _fraction(text: str) -> float:
    """An argparse type: a number from 0 to 1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number from 0 to 1, got {text!r}") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be from 0 to 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0, got {value}")
    return value


def _output_path(text: str) -> Path:
    """An argparse type for a path the command writes: a local path (pipeline.config.local_output_path)."""
    from pipeline.config import ConfigError, local_output_path

    try:
        return Path(local_output_path(text))
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _build_output(text: str) -> str:
    """An argparse type for a build's output: a local folder, or a URL of a store whose filesystem is installed
    (pipeline.config.output_location); a local path is made absolute against where the command runs."""
    from pipeline.config import ConfigError, output_location
    from pipeline.io.storage import is_url

    try:
        target = output_location(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return target if is_url(target) else str(Path(target).resolve())


COUNT, POSITIVE = _at_least(0), _at_least(1)
BUILD_HELP = "build folder or URL (s3://..., gs://...) with manifest.json"


def _source_spec(spec: str) -> dict:
    """`demo` | `csv:PATH[,key=value...]` -> a sources[] entry of params.yaml."""
    kind, _, rest = spec.partition(":")
    parts = [p for p in rest.split(",") if p] if rest else []
    path = parts[0] if parts and "=" not in parts[0] else None
    options = dict(p.split("=", 1) for p in parts[1 if path else 0:])
    name = options.pop("name", None) or (Path(path).name if path else kind)
    entry: dict = {"name": name, "kind": kind, "options": options}
    if path:
        from pipeline.io.storage import is_url

        entry["path"] = path if is_url(path) else str(Path(path).resolve())
    return entry


def _add_build(sub) -> None:
    p = sub.add_parser("build", help="run the Beam pipeline: sources -> faces -> AUs -> instructions -> Parquet",
                       description="Build a dataset from params.yaml; flags override params.")
    p.add_argument("--params", type=Path, default=None, help="params file (default: ./params.yaml of the project)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override any param, e.g. --set align.crop_size=448 (value parsed as YAML); repeatable")
    p.add_argument("--source", action="append", default=[], metavar="SPEC",
                   help="replace the params' sources: 'demo' or 'csv:FOLDER[,image_dir=images,...]'; repeatable")
    p.add_argument("--output", "-o", type=_build_output,
                   help="output folder or URL, e.g. s3://bucket/releases/v1 (params: output.dir)")
    p.add_argument("--limit", type=POSITIVE, help="read at most N items per source (N >= 1)")
    p.add_argument("--workers", type=POSITIVE, help="Beam direct-runner workers (params: runner.num_workers)")
    p.add_argument("--running-mode", choices=["in_memory", "multi_processing", "multi_threading"],
                   help="Beam direct-runner mode (params: runner.direct_running_mode)")
    p.add_argument("--no-validate", action="store_true", help="skip Great Expectations validation after the build")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _config_from(args):
    from pipeline.config import load_config

    overrides = list(args.overrides)
    if args.source:
        overrides.append("sources=" + json.dumps([_source_spec(s) for s in args.source]))
    if args.output is not None:  # relative to where the command runs, like any command-line path
        overrides.append(f"output.dir={json.dumps(args.output)}")
    if args.workers is not None:
        overrides.append(f"runner.num_workers={args.workers}")
    if args.running_mode:
        overrides.append(f"runner.direct_running_mode={args.running_mode}")
    config = load_config(args.params, overrides)
    if args.limit is not None:  # every source, whatever the params name (argparse has checked N >= 1)
        for source in config.sources:
            source.limit = args.limit
    return config


def cmd_build(args) -> int:
    from pipeline.warm_process import suite_process

    with contextlib.ExitStack() as stack:
        # Started before the imports below (Beam alone takes ~2 s): Great Expectations then loads on the
        # other core while this process starts the build, and is ready before the Beam workers need the CPU.
        suite_executor = None if args.no_validate else stack.enter_context(suite_process())
        return _build_with(args, suite_executor)


def _build_with(args, suite_executor) -> int:
    config = _config_from(args)  # a params error is reported before Beam is imported (~1.5 s)
    from pipeline.build import ValidationFailed, build

    try:
        result = build(config, progress=not args.no_progress, validate=not args.no_validate,
                       suite_executor=suite_executor)
    except ValidationFailed as exc:
        _print_validation(exc.report)
        print(f"fea build: not published: {exc}", file=sys.stderr)
        return EXIT_FAILED
    counts = result.manifest.counts
    print(f"built {result.out_dir}: {counts.inputs} inputs = {counts.accepted_inputs} accepted + "
          f"{counts.rejected_inputs} rejected; {counts.rows} rows in {result.seconds:.1f}s")
    resume = result.manifest.resume
    if resume is not None and resume.reused:
        print(f"resumed: {resume.reused} of {resume.shards} shards of image work reused from the interrupted run")
    llm = result.manifest.llm
    if llm:
        rate = llm["hallucination_rate"]
        print(f"llm {llm['model']} ({llm['mode']}): rows by status {llm['rows_by_llm_status']}; hallucination rate "
              f"{'n/a' if rate is None else f'{rate:.1%}'}"
              + (f"; {llm['batch_requests']} requests in llm_batch_requests.jsonl" if "batch_requests" in llm else ""))
    if result.validation is not None:
        _print_validation(result.validation)
    return EXIT_OK


def cmd_llm(args) -> int:
    from pipeline.config import load_config
    from pipeline.llm.batch import import_results
    from pipeline.llm.cache import ResponseCache

    config = load_config(args.params, args.set or [])
    if not Path(args.results).is_file():
        raise FileNotFoundError(f"no Batch-API results file at {args.results}")
    cache_dir = args.cache_dir.resolve() if args.cache_dir else config.resolve_output(config.llm.cache_dir)
    counts = import_results(Path(args.results), ResponseCache(cache_dir))
    print(f"imported into {cache_dir}: {counts}")
    return EXIT_OK if counts.get("imported") else EXIT_FAILED


def _add_export(sub) -> None:
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
    p.add_argument("--output", "-o", type=_output_path, required=True,
                   help="export folder (outside the build; an earlier export there is replaced)")
    p.add_argument("--split", help="comma-separated splits to export (default: all in the build)")
    p.add_argument("--images", choices=["copy", "none"], default="copy",
                   help="llava/sharegpt: write the crops to OUTPUT/images (copy, default) or only reference them")
    p.add_argument("--limit", type=POSITIVE, help="export at most N rows per split")


def cmd_export(args) -> int:
    from pipeline.export import export

    splits = [s for s in args.split.split(",") if s] if args.split else None
    result = export(args.dir, args.format, args.output, splits=splits, images=args.images, limit=args.limit)
    for split, c in result["splits"].items():
        print(f"{split}: {c['rows_exported']} rows exported ({c['rows_in_shards']} in the shards)")
    print(f"{result['format']} export written to {args.output} ({result['image_files']} image files); "
          f"see {args.output / 'export_manifest.json'}")
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
    from pipeline.warm_process import suite_process

    config = load_config(args.params)
    suite = args.suite or config.resolve_input(config.validate_.suite)
    rate = config.validate_.min_accept_rate if args.min_accept_rate is None else args.min_accept_rate
    v = config.validate_
    with suite_process() as suite_executor:  # the GX suite runs beside the project checks
        report = validate_build(
            args.dir, suite, rate, report_dir=args.report_dir, max_duplicate_rate=v.max_duplicate_rate,
            min_class_accept_ratio=v.min_class_accept_ratio, reverify_rows=args.reverify_rows,
            suite_executor=suite_executor)
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


def _add_train(sub) -> None:
    p = sub.add_parser(
        "train", help="fine-tune an image-text-to-text model on a build's train split (loss on answers only)",
        description="Fine-tune a Hugging Face image-text-to-text model (e.g. a LLaVA checkpoint) on the "
                    "conversations of a build, read with `datasets`. User turns are masked out of the loss; the "
                    "loss of every step is printed and logged to OUTPUT/train_log.jsonl; the final model is saved "
                    "in OUTPUT. Needs transformers (and peft for --lora): pip install -e '.[train]'.")
    p.add_argument("dir", nargs="?", default="build/demo", help=BUILD_HELP + " (default build/demo)")
    p.add_argument("--model", required=True,
                   help="model folder or hub id; 'tiny' builds a tiny random LLaVA-style model offline (smoke tests)")
    p.add_argument("--output-dir", "-o", type=_output_path, required=True,
                   help="where checkpoints and the final model go")
    p.add_argument("--split", default="train", help="split to train on (default train)")
    p.add_argument("--streaming", action="store_true", help="stream the rows (datasets IterableDataset)")
    p.add_argument("--limit", type=POSITIVE, help="use only the first N rows (e.g. to overfit a handful)")
    p.add_argument("--epochs", type=POSITIVE, default=1,
                   help="passes over the data (default 1; ignored with --max-steps)")
    p.add_argument("--max-steps", type=POSITIVE, help="stop after N optimizer steps (cycling through the data)")
    p.add_argument("--batch-size", type=POSITIVE, default=4, help="rows per forward pass (default 4)")
    p.add_argument("--grad-accum", type=POSITIVE, default=1, help="forward passes per optimizer step (default 1)")
    p.add_argument("--lr", type=_positive_float, default=2e-5, help="AdamW learning rate (default 2e-5)")
    p.add_argument("--warmup-steps", type=COUNT, default=0, help="linear learning-rate warm-up steps")
    p.add_argument("--max-length", type=POSITIVE, default=2048, help="truncate examples to N tokens (default 2048)")
    p.add_argument("--save-steps", type=COUNT, default=0, help="save OUTPUT/checkpoint-N every N steps (0: final only)")
    p.add_argument("--freeze-vision", action="store_true", help="do not train the vision tower")
    p.add_argument("--lora", action="store_true", help="train LoRA adapters on the language model (needs peft)")
    p.add_argument("--lora-r", type=POSITIVE, default=16, help="LoRA rank (default 16; alpha = 2 * rank)")
    p.add_argument("--bf16", action="store_true", help="load the model in bfloat16")
    p.add_argument("--device", help="torch device (default: cuda when available, else cpu)")
    p.add_argument("--seed", type=int, default=0, help="shuffling and initialisation seed")


def _add_evaluate(sub) -> None:
    p = sub.add_parser(
        "evaluate", help="generate answers on a build's test split; FE accuracy and AU F1",
        description="Generate an answer to the first user turn of every row (greedy) and score it FEABench-style: "
                    "FE accuracy (first canonical emotion word vs the label) and AU F1 (AU codes named vs au_present).")
    p.add_argument("dir", nargs="?", default="build/demo", help=BUILD_HELP + " (default build/demo)")
    p.add_argument("--model", required=True, help="model folder (e.g. the OUTPUT of fea train) or hub id")
    p.add_argument("--split", default="test", help="split to evaluate (default test)")
    p.add_argument("--limit", type=POSITIVE, help="evaluate the first N rows only")
    p.add_argument("--batch-size", type=POSITIVE, default=8, help="rows per generate call (default 8)")
    p.add_argument("--max-new-tokens", type=POSITIVE, default=128, help="answer length limit (default 128)")
    p.add_argument("--output", type=_output_path, help="write predictions.jsonl and scores.json to this folder")
    p.add_argument("--streaming", action="store_true", help="stream the rows (datasets IterableDataset)")
    p.add_argument("--device", help="torch device (default: cuda when available, else cpu)")


def cmd_train(args) -> int:
    from pipeline.train.loop import TrainConfig, train

    result = train(TrainConfig(
        build_dir=args.dir, model=args.model, output_dir=args.output_dir, split=args.split,
        streaming=args.streaming, limit=args.limit, epochs=args.epochs, max_steps=args.max_steps,
        batch_size=args.batch_size, grad_accum=args.grad_accum, lr=args.lr, warmup_steps=args.warmup_steps,
        max_length=args.max_length, save_steps=args.save_steps, freeze_vision=args.freeze_vision,
        lora=args.lora, lora_r=args.lora_r, bf16=args.bf16, device=args.device, seed=args.seed,
    ))
    first, last = (result.losses[0], result.losses[-1]) if result.losses else (float("nan"), float("nan"))
    print(f"trained {result.steps} steps in {result.seconds:.1f}s: loss {first:.4f} -> {last:.4f}; "
          f"model saved in {result.output_dir}")
    return EXIT_OK


def cmd_evaluate(args) -> int:
    from pipeline.train.evaluate import evaluate

    scores = evaluate(args.dir, args.model, split=args.split, limit=args.limit, batch_size=args.batch_size,
                      max_new_tokens=args.max_new_tokens, device=args.device, output_dir=args.output,
                      streaming=args.streaming)
    print(json.dumps(scores, indent=2))
    return EXIT_OK


def cmd_sources(args) -> int:
    from pipeline.sources import registry

    for kind, cls in sorted(registry().items()):
        print(f"{kind:14s} {cls.summary}")
    print("(or kind: 'module:Class' in params.yaml for an adapter outside the package)")
    return EXIT_OK


def cmd_calibrate(args) -> int:
    from pipeline.calibrate import calibrate, report_lines
    from pipeline.config import load_config

    config = load_config(args.params)
    base = Path(args.base) if args.base else config.resolve_input(config.au.head)
    try:
        head, fits = calibrate(args.builds, base, args.output, min_positives=args.min_positives, folds=args.folds)
    except ValueError as exc:
        print(f"fea calibrate: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print("\n".join(report_lines(head, fits)))
    learned = sum(f.kind == "logistic" for f in fits)
    print(f"AU head {head.tag}: {learned} AUs learned, {len(fits) - learned} from {head.meta['base']}; "
          f"written to {args.output}; use it with: fea build --set au.head={args.output}")
    return EXIT_OK


def parser() -> argparse.ArgumentParser:
    top = _Parser(prog="fea", description="Build, validate and inspect FEA instruction datasets.")
    verbose_help = "log progress of every stage, and show the start-up output of Beam, MediaPipe and TFLite"
    top.add_argument("-v", "--verbose", action="store_true", help=verbose_help)
    sub = top.add_subparsers(dest="command", required=True)
    _add_build(sub)

    v = sub.add_parser("validate", help="validate a build with Great Expectations; non-zero exit if it fails")
    v.add_argument("dir", help=BUILD_HELP)
    v.add_argument("--params", type=Path, default=None, help="params file that names the expectation suite")
    v.add_argument("--suite", type=Path, default=None, help="expectation suite JSON (default: from params)")
    v.add_argument("--min-accept-rate", type=_fraction, default=None,
                   help="fail if a smaller share of inputs was accepted (default: params validate.min_accept_rate)")
    v.add_argument("--report-dir", type=_output_path, default=None,
                   help="where to write the result (default: DIR/validation)")
    v.add_argument("--reverify-rows", type=POSITIVE, default=None,
                   help="re-read only this many answers with the grounding verifier, spread over the rows "
                        "(default: every row; a build's own validation uses params validate.reverify_rows)")

    i = sub.add_parser("inspect", help="counts, label distribution and a few rendered samples of a build")
    i.add_argument("dir", help=BUILD_HELP)
    i.add_argument("--samples", type=COUNT, default=3, help="how many conversations to print")
    i.add_argument("--seed", type=int, default=0, help="which samples to print")

    r = sub.add_parser("report", help="HTML report with plots and sample faces of a build")
    r.add_argument("dir", help=BUILD_HELP)
    r.add_argument("--output", type=_output_path, default=None, help="HTML path (default: DIR/report/report.html)")
    r.add_argument("--samples", type=COUNT, default=12, help="sample faces shown with their conversations")
    lm = sub.add_parser("llm", help="LLM stage tools: import-batch loads Batch-API results into the response cache")
    lsub = lm.add_subparsers(dest="llm_command", required=True)
    ib = lsub.add_parser("import-batch", help="store the results of a Batch-API job (output JSONL) in the cache, "
                         "so the next build sends no request for them")
    ib.add_argument("results", help="the Batch-API output file (JSONL: custom_id, response.body)")
    ib.add_argument("--params", help="params.yaml (for llm.cache_dir); default ./params.yaml or the project's")
    ib.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a param")
    ib.add_argument("--cache-dir", type=_output_path, help="cache folder (default: llm.cache_dir)")
    sub.add_parser("sources", help="list the source adapters (built-in and registered), one line each")
    c = sub.add_parser("calibrate", help="learn an AU head from FACS-coded builds (for --set au.head=FILE)",
                       description=(__import__("pipeline.calibrate").calibrate.__doc__ or "").split("\n\n")[0])
    c.add_argument("builds", nargs="+", help="build folders (or URLs) whose rows carry corpus AU codes")
    c.add_argument("--output", "-o", type=_output_path, default=Path("au_head.calibrated.json"),
                   help="AU head JSON to write (format of the default head, au_head.json)")
    c.add_argument("--min-positives", type=POSITIVE, default=10,
                   help="fewest coded positives (and negatives) to learn an AU's own model; rarer AUs keep the base "
                   "head's model, with its threshold re-chosen when that scores better")
    c.add_argument("--folds", type=_at_least(3), default=5, help="subject-disjoint cross-validation folds")
    c.add_argument("--base", help="head whose models rarely coded AUs keep (default: params' au.head)")
    c.add_argument("--params", type=Path, default=None, help="params file (for au.head)")
    _add_train(sub)
    _add_evaluate(sub)
    _add_export(sub)
    for command in sub.choices.values():  # `fea build -v` works as well as `fea -v build`
        command.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help=verbose_help)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    from pipeline.quiet import quiet_logs

    quiet_logs(verbose=args.verbose)  # before Beam loads here, and inherited by the build's worker processes
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    from pipeline.config import ConfigError
    from pipeline.errors import LLMStopped, PipelineFailed
    from pipeline.export import ExportError
    from pipeline.io.build_dir import ManifestError
    from pipeline.io.manifest import AccountingError
    from pipeline.io.storage import StorageError
    from pipeline.models.files import ModelFileError
    from pipeline.sources import SourceError
    from pipeline.templating import TemplateError

    handlers = {"build": cmd_build, "validate": cmd_validate, "inspect": cmd_inspect, "report": cmd_report,
                "train": cmd_train, "evaluate": cmd_evaluate, "sources": cmd_sources,
                "calibrate": cmd_calibrate, "llm": cmd_llm, "export": cmd_export}
    try:
        return handlers[args.command](args)
    except (ConfigError, SourceError, TemplateError, FileExistsError, ExportError, StorageError) as exc:
        print(f"fea {args.command}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (ModelFileError, FileNotFoundError) as exc:
        print(f"fea {args.command}: {exc}", file=sys.stderr)
        return EXIT_MISSING
    except AccountingError as exc:
        print(f"fea {args.command}: accounting error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except ManifestError as exc:
        print(f"fea {args.command}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except (LLMStopped, PipelineFailed) as exc:
        print(f"fea {args.command}: {exc}", file=sys.stderr)
        return EXIT_FAILED


def run() -> None:
    """The `fea` command: `main` on the command line's arguments, then exit."""
    code = main()
    # The process ends here: freezing every object spares the interpreter's exit a collection of all of
    # them (~0.5 s after Beam, pandas and pyarrow are loaded). Only for the command: a caller of main() goes on.
    gc.freeze()
    sys.exit(code)


if __name__ == "__main__":
    run()
