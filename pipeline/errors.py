"""Whole-run failures the CLI reports with a one-line reason (kept light: no Beam import)."""

from __future__ import annotations


class PipelineFailed(RuntimeError):
    """The Beam pipeline itself failed (e.g. a shard could not be written): nothing is published."""


class LLMStopped(RuntimeError):
    """on_error=stop and the endpoint failed for good: the build stops; its cache keeps what it got."""
