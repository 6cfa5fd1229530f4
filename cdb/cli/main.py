"""``cdb``: the root command; each sub-command lives in its own module."""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from cdb.cli import (
    acl,
    bench,
    cutover,
    dashboard,
    demo,
    dlq,
    flags,
    health,
    matrix,
    run,
    schema,
    service,
    status,
    topology,
)
from cdb.cli.output import exit_with, unexpected
from core.errors import CdbError
from core.logging import scrubbed_excepthook

app = typer.Typer(
    name="cdb",
    help="cdb-contracts: migrate the ws -> signal -> risk -> execution pipeline to Pydantic contracts.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            typer.echo(f"cdb-contracts {version('cdb-contracts')}")
        except PackageNotFoundError:
            typer.echo("cdb-contracts 0+unknown (not installed)")
        raise typer.Exit()


@app.callback()
def _root(
    show_version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """cdb-contracts: migrate the ws -> signal -> risk -> execution pipeline to Pydantic contracts."""


app.command("run")(run.run)
app.command("service")(service.service)
app.command("flags")(flags.flags)
app.command("demo")(demo.demo)
app.add_typer(schema.app, name="schema")
app.add_typer(acl.app, name="acl")
app.command("status")(status.status)
app.command("health")(health.health)
app.command("dashboard")(dashboard.dashboard)
app.add_typer(cutover.app, name="cutover")
app.add_typer(dlq.app, name="dlq")
app.add_typer(topology.app, name="topology")
app.command("matrix")(matrix.matrix)
app.command(
    "bench",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []},
)(bench.bench)


def main() -> None:
    """Run the ``cdb`` command line: an error is one line on stderr and a non-zero exit, never
    a traceback (``CDB_TRACEBACK=1`` re-raises an unexpected one, for a bug report, printed with
    secrets scrubbed)."""
    sys.excepthook = scrubbed_excepthook
    try:
        app()
    except CdbError as exc:
        exit_with(exc)
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    except Exception as exc:
        if os.environ.get("CDB_TRACEBACK", "").lower() in ("1", "true", "yes"):
            raise
        exit_with(unexpected(exc), code=1)
