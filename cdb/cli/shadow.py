"""``cdb shadow SERVICE``: the out-of-band shadow comparator in the foreground (a container)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from cdb.cli.output import exit_with
from core.errors import CdbError
from core.topics import ServiceName


def shadow(
    name: Annotated[ServiceName, typer.Argument(help="the service to check: signal, risk or execution")],
    env_file: Annotated[
        Path | None,
        typer.Option("--env-file", help="The checked service's env file (its path, profile, Redis)."),
    ] = None,
    partition: Annotated[
        list[int] | None,
        typer.Option("--partition", "-p", help="Read only this partition (repeat); default: all."),
    ] = None,
    from_now: Annotated[
        bool,
        typer.Option("--from-now", help="A new comparator group starts at new entries."),
    ] = False,
) -> None:
    """Decode every message SERVICE reads on both paths, beside the pipeline, until SIGTERM.

    Its own consumer group per topic (``cdb-shadow-SERVICE``) sees every entry the service
    sees; mismatches per field go to /metrics (METRICS_PORT), ``cdb status`` (a
    ``shadow-<instance>`` row under SERVICE, shd ``cmp``) and ``cdb cutover check``. The
    service itself does no extra work: leave its CONTRACT_SHADOW off.
    """
    from cdb.comparator import run_comparator

    try:
        asyncio.run(run_comparator(name, env_file=env_file, partitions=partition or None, from_now=from_now))
    except CdbError as exc:
        exit_with(exc)
