"""Whole-run failures the CLI reports with a one-line reason, and how an exception is told (kept light: no Beam
import)."""

from __future__ import annotations


class PipelineFailed(RuntimeError):
    """The Beam pipeline itself failed (e.g. a shard could not be written): nothing is published."""


class LLMStopped(RuntimeError):
    """on_error=stop and the endpoint failed for good: the build stops; its cache keeps what it got."""


def describe(exc: BaseException) -> str:
    """`Type: message` of an exception, even one whose __str__ itself fails."""
    try:
        text = str(exc)
    except Exception:  # noqa: BLE001 - the reject must be written whatever the exception is
        text = "<exception text unavailable>"
    return f"{type(exc).__name__}: {text}"
