"""Exit codes, argparse value types and help shared by the `fea` subcommands.

Exit codes: 0 ok; 1 the work ran and failed (validation failed, accounting error);
2 bad usage or configuration (one-line reason on stderr); 3 a required model or file is missing.
"""

from __future__ import annotations

import argparse
from pathlib import Path

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_MISSING = 0, 1, 2, 3


def at_least(minimum: int):
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


def _number(text: str, expected: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None


def fraction(text: str) -> float:
    """An argparse type: a number from 0 to 1."""
    value = _number(text, "a number from 0 to 1")
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be from 0 to 1, got {value}")
    return value


def positive_float(text: str) -> float:
    """An argparse type: a number greater than 0."""
    value = _number(text, "a number")
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0, got {value}")
    return value


def output_path(text: str) -> Path:
    """An argparse type for a path the command writes: a local path (pipeline.config.local_output_path)."""
    from pipeline.config import ConfigError, local_output_path

    try:
        return Path(local_output_path(text))
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_output(text: str) -> str:
    """An argparse type for a build's output: a local folder, or a URL of a store whose filesystem is installed
    (pipeline.config.output_location); a local path is made absolute against where the command runs."""
    from pipeline.config import ConfigError, output_location
    from pipeline.io.storage import is_url

    try:
        target = output_location(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return target if is_url(target) else str(Path(target).resolve())


COUNT, POSITIVE = at_least(0), at_least(1)
BUILD_HELP = "build folder or URL (s3://..., gs://...) with manifest.json"
