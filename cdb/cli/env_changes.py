"""The env-file switches' shared CLI pieces (strict cutover, version retirement): the options,
the diff, what was written, the restore and the recreate list, shown the same way for each."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from cdb.cli.output import console, shown
from core.env_files import FileChange, recreate_commands
from core.topics import ServiceName

__all__ = [
    "Backup",
    "EnvDir",
    "ForceRollback",
    "Plan",
    "print_changes",
    "print_recreate",
    "print_written",
    "restore",
]

EnvDir = Annotated[Path, typer.Option("--env-dir", help="Directory of the services' <service>.env files.")]
Plan = Annotated[bool, typer.Option("--plan", help="Show the unified diff only; write nothing.")]
Backup = Annotated[
    Path | None, typer.Option("--backup", help="Backup directory to restore (default: the latest).")
]
ForceRollback = Annotated[
    bool, typer.Option("--force", help="Roll back even if the files were edited since apply.")
]


def print_changes(changes: list[FileChange], label: str) -> None:
    """The unified diff of every file that would change, or a line saying none would."""
    diffs = [c.diff(label) for c in changes if c.changed]
    if not diffs:
        console.print("no file would change")
    for text in diffs:
        console.print(escape(text), highlight=False, end="")


def print_written(backup: Path, log_line: str, *, forced: bool, reason: str | None) -> None:
    """Where the originals were kept and the log line; a forced switch says so with its reason."""
    console.print(f"\nwritten; originals in {shown(backup)}/ ; log: {escape(log_line)}", highlight=False)
    if forced:
        console.print(f"[bold yellow]forced without a GO[/], reason: {escape(reason or '')}")


def restore(source: Path, changes: list[FileChange], *, plan: bool, write: Callable[[], str]) -> bool:
    """Show the restore from ``source`` (``plan``: only that) or run ``write`` (the rollback,
    returning its log line); ``True`` if files were written."""
    if plan:
        console.print(f"[bold]plan[/]: restore from {shown(source)}/ (nothing written):")
        print_changes(changes, "restored")
        return False
    console.print(f"restored from {shown(source)}/ ; log: {escape(write())}", highlight=False)
    return True


def print_recreate(services: Sequence[ServiceName], verb: str, *, then: str, why: str) -> None:
    """The commands recreating each container in order, what to check after each, and why that order."""
    console.print(f"\nNow recreate each container, one at a time, to {verb}:")
    for command in recreate_commands(list(services)):
        console.print(f"  {shown(command)}")
        console.print(f"    then: {then}")
    console.print(why)
