"""``cdb service NAME``: run one service in the foreground, as its container does."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from cdb.cli.output import exit_with
from core.errors import CdbError
from core.topics import ServiceName


def service(
    name: Annotated[ServiceName, typer.Argument(help="ws, signal, risk or execution")],
    env_file: Annotated[
        Path | None,
        typer.Option(
            "--env-file",
            help="Read settings from this env file (the environment overrides it); "
            "it is also watched: /metrics and cdb status show when it asks for another path.",
        ),
    ] = None,
) -> None:
    """Run one service until SIGTERM; its flags come from its environment / env file.

    /metrics is served on METRICS_PORT (METRICS_ADDR, default 127.0.0.1) when set.
    """
    from cdb.launcher import run_service

    try:
        asyncio.run(run_service(name, env_file=env_file))
    except CdbError as exc:
        exit_with(exc)
