"""A Beam worker process of a multi-processing build: Beam's own SDK harness (`sdk_worker_main`), with
`pipeline.process.quiet`'s log filter set up before Beam is imported, so the worker's start-up lines ("apitools
not found", "Logging handler created") do not reach the user. `pipeline.builder.run` starts workers with it."""

from __future__ import annotations

import shlex
import sys

from pipeline.process.quiet import quiet_logs


def command() -> str:
    """The shell command that starts one worker (Beam runs it with `shell=True`)."""
    return f"{shlex.quote(sys.executable)} -m pipeline.process.beam_worker"


def main() -> None:
    quiet_logs()  # verbosity from the environment the build's process passed down
    from apache_beam.runners.worker import sdk_worker_main

    sdk_worker_main.main(sys.argv)


if __name__ == "__main__":
    main()
