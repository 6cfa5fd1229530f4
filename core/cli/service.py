"""``cdb service NAME``: run one service in the foreground, as its container does."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from core.cli.output import exit_with
from core.errors import CdbError
from core.topics import ServiceName


def service(name: Annotated[ServiceName, typer.Argument(help="ws, signal, risk or execution")]) -> None:
    """Run one service until SIGTERM; its flags come from its environment / env file."""
    from services.launcher import run_service

    try:
        asyncio.run(run_service(name))
    except CdbError as exc:
        exit_with(exc)
