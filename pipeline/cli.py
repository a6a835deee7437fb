"""The `fea` command: parse arguments, load params, call the library. No logic of its own.

Exit codes: 0 ok; 1 the work ran and failed (validation failed, accounting error);
2 bad usage or configuration (one-line reason on stderr); 3 a required model or file is missing.
Each subcommand's arguments and handler are in `pipeline.commands`; here the parser is put together and
the library's errors become exit codes.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import sys
from typing import NoReturn

from pipeline.commands import build, release, train
from pipeline.commands.args import EXIT_FAILED, EXIT_MISSING, EXIT_OK, EXIT_USAGE

__all__ = ["EXIT_FAILED", "EXIT_MISSING", "EXIT_OK", "EXIT_USAGE", "main", "parser", "run"]


class _Parser(argparse.ArgumentParser):
    """argparse with the exit-code contract above: a usage error is one line on stderr and exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: {message} (see {self.prog} --help)\n")


def parser() -> argparse.ArgumentParser:
    top = _Parser(prog="fea", description="Build, validate and inspect FEA instruction datasets.")
    verbose_help = "log progress of every stage, and show the start-up output of Beam, MediaPipe and TFLite"
    top.add_argument("-v", "--verbose", action="store_true", help=verbose_help)
    sub = top.add_subparsers(dest="command", required=True)
    for add in (build.add_build, release.add_validate, release.add_inspect, release.add_report, build.add_llm,
                build.add_sources, train.add_calibrate, train.add_train, train.add_evaluate, release.add_export):
        add(sub)
    for command in sub.choices.values():  # `fea build -v` works as well as `fea -v build`
        command.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help=verbose_help)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    from pipeline.process.quiet import quiet_logs

    quiet_logs(verbose=args.verbose)  # before Beam loads here, and inherited by the build's worker processes
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    from pipeline.config import ConfigError
    from pipeline.errors import LLMStopped, PipelineFailed
    from pipeline.export import ExportError
    from pipeline.io.accounting import AccountingError
    from pipeline.io.build_dir import ManifestError
    from pipeline.io.storage import StorageError
    from pipeline.models.files import ModelFileError
    from pipeline.sources import SourceError
    from pipeline.templating import TemplateError

    try:
        return args.handler(args)
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
