"""Shared output helpers: rich tables for people, JSON for scripts, one exit on bad config."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from rich.console import Console
from rich.table import Table

from core.errors import CdbError

__all__ = ["console", "err_console", "exit_with", "print_json", "table"]

# Piped output (CI logs, `| less`) gets a wide table instead of rich's 80-column default.
console = Console(width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 160)


def table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> Table:
    """A rich table with ``columns`` and ``rows`` (values rendered with ``str``)."""
    out = Table(title=title, show_lines=False)
    for col in columns:
        out.add_column(col)
    for row in rows:
        out.add_row(*("" if v is None else str(v) for v in row))
    return out


def print_json(value: Any) -> None:
    """Print ``value`` as JSON on stdout (for ``--json``)."""
    sys.stdout.write(json.dumps(value, indent=2, default=str) + "\n")


def exit_with(exc: CdbError, code: int = 2) -> NoReturn:
    """Print a project error for a person and exit with ``code``."""
    err_console.print(f"[bold red]error:[/] {exc}")
    raise SystemExit(code)
