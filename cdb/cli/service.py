"""``cdb service NAME``: run one service in the foreground, as its container does."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from cdb.cli.output import exit_with
from core.errors import CdbError
from core.topics import ServiceName


def service(
    name: Annotated[ServiceName, typer.Argument(help="ws, signal, risk or execution")],
    from_start: Annotated[
        bool,
        typer.Option(
            "--from-start",
            help="ws: ignore the saved source position and begin at the first trade (or WS_FROM_START).",
        ),
    ] = False,
    env_file: Annotated[
        Path | None,
        typer.Option(
            "--env-file",
            help="Read every setting from this env file (flags, WS_*/SIGNAL_*/RISK_*/EXECUTION_*, "
            "METRICS_*; the environment overrides it; cdb flags checks it the same way); it is also "
            "watched: /metrics and cdb status show when it asks for another path.",
        ),
    ] = None,
) -> None:
    """Run one service until SIGTERM (then it stops cleanly and reports itself stopped); every
    setting comes from its environment over its env file. A recreated ws resumes where it stopped.

    /metrics is served on METRICS_PORT (METRICS_ADDR, default 127.0.0.1) when set.
    """
    from cdb.launcher import run_service

    try:
        asyncio.run(run_service(name, from_start=from_start, env_file=env_file))
    except CdbError as exc:
        exit_with(exc)
    if os.path.basename(sys.argv[0]) == "cdb":  # the process is this service (not a test runner)
        _exit_now()


def _exit_now() -> None:
    # The service has stopped cleanly: its batch is acked or left pending, its last status
    # written, its connections closed. Tearing down the interpreter (module globals, GC of
    # every object) adds 0.3 s to seconds on a busy machine to a container's stop, for
    # nothing: flush what was written and leave at once.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
