"""`fea build` (params.yaml and flags -> one config -> the pipeline), `fea sources`, `fea llm import-batch`."""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path

from pipeline.commands.args import EXIT_FAILED, EXIT_OK, POSITIVE, build_output, output_path
from pipeline.commands.release import print_validation


def add_build(sub) -> None:
    p = sub.add_parser("build", help="run the Beam pipeline: sources -> faces -> AUs -> instructions -> Parquet",
                       description="Build a dataset from params.yaml; flags override params.")
    p.add_argument("--params", type=Path, default=None, help="params file (default: ./params.yaml of the project)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override any param, e.g. --set align.crop_size=448 (value parsed as YAML); repeatable")
    p.add_argument("--source", action="append", default=[], metavar="SPEC",
                   help="replace the params' sources: 'demo' or 'csv:FOLDER[,image_dir=images,...]'; repeatable")
    p.add_argument("--output", "-o", type=build_output,
                   help="output folder or URL, e.g. s3://bucket/releases/v1 (params: output.dir)")
    p.add_argument("--limit", type=POSITIVE, help="read at most N items per source (N >= 1)")
    p.add_argument("--workers", type=POSITIVE, help="Beam direct-runner workers (params: runner.num_workers)")
    p.add_argument("--running-mode", choices=["in_memory", "multi_processing", "multi_threading"],
                   help="Beam direct-runner mode (params: runner.direct_running_mode)")
    p.add_argument("--no-validate", action="store_true", help="skip Great Expectations validation after the build")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(handler=cmd_build)


def source_spec(spec: str) -> dict:
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


def config_from(args):
    """The build's config: params.yaml with `--set` overrides, then the flags that stand for params."""
    from pipeline.config import load_config

    overrides = list(args.overrides)
    if args.source:
        overrides.append("sources=" + json.dumps([source_spec(s) for s in args.source]))
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
    from pipeline.process.warm_process import suite_process

    with contextlib.ExitStack() as stack:
        # Started before the imports below (Beam alone takes ~2 s): Great Expectations then loads on the
        # other core while this process starts the build, and is ready before the Beam workers need the CPU.
        suite_executor = None if args.no_validate else stack.enter_context(suite_process())
        return _build_with(args, suite_executor)


def _build_with(args, suite_executor) -> int:
    config = config_from(args)  # a params error is reported before Beam is imported (~1.5 s)
    from pipeline.builder.run import ValidationFailed, build

    try:
        result = build(config, progress=not args.no_progress, validate=not args.no_validate,
                       suite_executor=suite_executor)
    except ValidationFailed as exc:
        print_validation(exc.report)
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
        print_validation(result.validation)
    return EXIT_OK


def add_sources(sub) -> None:
    sub.add_parser("sources", help="list the source adapters (built-in and registered), one line each"
                   ).set_defaults(handler=cmd_sources)


def cmd_sources(args) -> int:
    from pipeline.sources import registry

    for kind, cls in sorted(registry().items()):
        print(f"{kind:14s} {cls.summary}")
    print("(or kind: 'module:Class' in params.yaml for an adapter outside the package)")
    return EXIT_OK


def add_llm(sub) -> None:
    lm = sub.add_parser("llm", help="LLM stage tools: import-batch loads Batch-API results into the response cache")
    lsub = lm.add_subparsers(dest="llm_command", required=True)
    ib = lsub.add_parser("import-batch", help="store the results of a Batch-API job (output JSONL) in the cache, "
                         "so the next build sends no request for them")
    ib.add_argument("results", help="the Batch-API output file (JSONL: custom_id, response.body)")
    ib.add_argument("--params", help="params.yaml (for llm.cache_dir); default ./params.yaml or the project's")
    ib.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a param")
    ib.add_argument("--cache-dir", type=output_path, help="cache folder (default: llm.cache_dir)")
    ib.set_defaults(handler=cmd_llm)


def cmd_llm(args) -> int:
    from pipeline.config import load_config
    from pipeline.llm.batch import import_results
    from pipeline.llm.cache import ResponseCache

    config = load_config(args.params, args.set or [])
    if not Path(args.results).is_file():
        raise FileNotFoundError(f"no Batch-API results file at {args.results}")
    cache_dir = args.cache_dir.resolve() if args.cache_dir else config.paths.llm_cache_dir
    counts = import_results(Path(args.results), ResponseCache(cache_dir))
    print(f"imported into {cache_dir}: {counts}")
    return EXIT_OK if counts.get("imported") else EXIT_FAILED
