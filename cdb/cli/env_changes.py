"""Showing env-file changes the same way for every switch that writes them (cutover, retirement)."""

from __future__ import annotations

from rich.markup import escape

from cdb.cli.output import console
from core.env_files import FileChange

__all__ = ["print_changes"]


def print_changes(changes: list[FileChange], label: str) -> None:
    """The unified diff of every file that would change, or a line saying none would."""
    diffs = [c.diff(label) for c in changes if c.changed]
    if not diffs:
        console.print("no file would change")
    for text in diffs:
        console.print(escape(text), highlight=False, end="")
