"""The env-file switches' shared CLI pieces (strict cutover, version retirement): the options,
the diff, what was written, the restore and the recreate list, shown the same way for each."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from cdb.cli.output import console, exit_with, shown
from core.env_files import (
    BackupKind,
    FileChange,
    latest_backup,
    plan_rollback,
    read_manifest,
    recreate_commands,
    rollback,
)
from core.errors import CdbError, ConfigError
from core.topics import ServiceName

__all__ = [
    "Backup",
    "EnvDir",
    "ForceRollback",
    "Plan",
    "print_changes",
    "print_recreate",
    "print_written",
    "roll_back",
]

EnvDir = Annotated[Path, typer.Option("--env-dir", help="Directory of the services' <service>.env files.")]
Plan = Annotated[bool, typer.Option("--plan", help="Show the unified diff only; write nothing.")]


def _backup_dir(value: Path | None) -> Path | None:
    """``--backup`` if it is a backup an apply wrote (a directory whose manifest lists the files it
    saved); anything else is a usage error (exit 2) before anything is read or restored."""
    if value is None:
        return None
    problem = _not_a_backup(value)
    if problem is None:
        return value
    accepted = ["a backup directory written by apply (<env-dir>/<backups>/<time>, with its manifest.json)"]
    exit_with(ConfigError("--backup", str(value), accepted, problem))


def _not_a_backup(path: Path) -> str | None:
    """What makes ``path`` no backup of an apply, or ``None`` when it is one."""
    if not path.is_dir():
        return "not a directory" if path.exists() else "no such directory"
    try:
        manifest = read_manifest(path)
    except FileNotFoundError:
        return "no manifest.json in it"
    except (OSError, ValueError) as exc:  # unreadable, or not JSON
        return f"its manifest.json cannot be read: {exc}"
    if not (isinstance(manifest, dict) and isinstance(manifest.get("files"), dict)):
        return "its manifest.json lists no files"
    return None


Backup = Annotated[
    Path | None,
    typer.Option("--backup", help="Backup directory to restore (default: the latest).", callback=_backup_dir),
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


def roll_back(
    env_dir: Path, backup: Path | None, kind: BackupKind, *, plan: bool, force: bool
) -> tuple[Path, list[FileChange]] | None:
    """Restore the env files of the last apply of ``kind`` (or of ``backup``) byte for byte, or
    with ``plan`` only show the restore; ``(backup used, changes)`` once written, ``None`` for a
    plan. A refusal (no backup, files edited since without ``force``) exits with its one line."""
    try:
        source = backup or latest_backup(env_dir, kind)
        changes = plan_rollback(env_dir, source, kind, force=force or plan)
    except CdbError as exc:
        exit_with(exc)
    if plan:
        console.print(f"[bold]plan[/]: restore from {shown(source)}/ (nothing written):")
        print_changes(changes, "restored")
        return None
    line = rollback(source, changes, kind)
    console.print(f"restored from {shown(source)}/ ; log: {escape(line)}", highlight=False)
    return source, changes


def print_recreate(services: Sequence[ServiceName], verb: str, *, then: str, why: str) -> None:
    """The commands recreating each container in order, what to check after each, and why that order."""
    console.print(f"\nNow recreate each container, one at a time, to {verb}:")
    for command in recreate_commands(list(services)):
        console.print(f"  {shown(command)}")
        console.print(f"    then: {then}")
    console.print(why)
