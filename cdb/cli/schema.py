"""``cdb schema``: export the contract documents, and the compatibility gate over snapshots."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cdb.cli.output import console, err_console, print_json, shown, table
from core.codec import CONTRACTS
from core.schema import (
    GateReport,
    GateStatus,
    Reader,
    check,
    default_contracts_dir,
    stale_exports,
    write_exports,
    write_snapshots,
)

app = typer.Typer(
    help="Contract documents (JSON Schema, AsyncAPI) and the compatibility gate.",
    no_args_is_help=True,
)

_Dir = Annotated[
    Path | None,
    typer.Option("--dir", help="The contracts directory (default: contracts/ of this checkout)."),
]
_SHORT = {Reader.NEW_CONSUMERS: "new consumers", Reader.OLD_CONSUMERS: "old consumers"}
_AsJson = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


@app.command("export")
def export(
    directory: _Dir = None,
    check_only: Annotated[
        bool, typer.Option("--check", help="Write nothing; exit 1 if the committed export is stale.")
    ] = False,
) -> None:
    """Write contracts/: json-schema/<Model>.json, versions/<topic>/<version>.json and asyncapi.json.

    JSON Schema per model (strict and lenient) and per contract version; AsyncAPI with every version."""
    root = directory or default_contracts_dir()
    if check_only:
        stale = stale_exports(root)
        for rel in stale:
            err_console.print(f"stale: {shown(root / rel)}")
        if stale:
            err_console.print("[bold red]the contract export is out of date:[/] run `cdb schema export`")
            raise typer.Exit(1)
        console.print(f"{shown(root)}: up to date")
        return
    changed = write_exports(root)
    for rel in changed:
        console.print(f"wrote {shown(root / rel)}")
    console.print(f"{shown(root)}: {len(changed)} file(s) changed")


@app.command("check")
def check_cmd(directory: _Dir = None, as_json: _AsJson = False) -> None:
    """Compare the contracts with the frozen snapshots; exit 1 on an unversioned breaking change."""
    root = (directory or default_contracts_dir()) / "snapshots"
    report = check(CONTRACTS, root)
    if as_json:
        print_json({"ok": report.ok, "topics": [v.as_json() for v in report.verdicts]})
    else:
        _print_report(report)
    if not report.ok:
        raise typer.Exit(1)


@app.command("snapshot")
def snapshot(
    directory: _Dir = None,
    force: Annotated[
        bool, typer.Option("--force", help="Overwrite an existing snapshot (un-freezes a released version).")
    ] = False,
) -> None:
    """Freeze each contract's schema as contracts/snapshots/<api_version>/<topic>.json."""
    root = (directory or default_contracts_dir()) / "snapshots"
    written = write_snapshots(CONTRACTS, root, force=force)
    for path in written:
        console.print(f"wrote {shown(path)}")
    console.print(f"{len(written)} snapshot(s) written")


def _print_report(report: GateReport) -> None:
    rows = []
    for v in report.verdicts:
        version = v.version or "-"
        if v.baseline and v.baseline != v.version:
            version = f"{version} (vs {v.baseline})"
        head = [v.topic.value, version, v.status.value]
        if not v.changes:
            rows.append([*head, "-", "-", "FULL", "-"])
        for i, c in enumerate(v.changes):
            breaks = ", ".join(_SHORT[r] for r in c.compatibility.broken_readers) or "-"
            lead = head if i == 0 else ["", "", ""]
            change = f"{c.kind.value}: {c.detail}"
            rows.append([*lead, c.field or "(message)", change, c.compatibility.value, breaks])
    columns = ["topic", "api_version", "status", "field", "change", "compat", "breaks"]
    cells = [[shown(c) for c in r] for r in rows]
    console.print(table("Contract changes against the frozen snapshots", columns, cells))
    for v in report.verdicts:
        if v.status.fails:
            err_console.print(f"[bold red]{shown(v.message())}[/]")
        elif v.status is GateStatus.VERSIONED:
            err_console.print(f"[yellow]{shown(v.message())}[/]")
    console.print("compatibility gate: " + ("[green]passed[/]" if report.ok else "[bold red]FAILED[/]"))
