"""``cdb service NAME``: run one service in the foreground, as its container does."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from core.cli.output import exit_with
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
) -> None:
    """Run one service until SIGTERM (then it stops cleanly and reports itself stopped); its
    flags come from its environment / env file. A recreated ws resumes where it stopped."""
    from services.launcher import run_service

    try:
        asyncio.run(run_service(name, from_start=from_start))
    except CdbError as exc:
        exit_with(exc)
