"""How ``cdb status`` draws its rows: essential columns that fit 80 columns, or all (``--wide``).

The essential view keeps what an operator checks after a flip (path, profile,
shadow, state) whole: those cells never wrap or shorten; only the instance name
may fold onto a second line. Counters are compact (``12.3k``). The wide view has
every column, including the breakdowns by reason and field.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

__all__ = ["ESSENTIAL", "WIDE", "status_console", "status_table"]

ESSENTIAL = [
    "service",
    "instance",
    "path",
    "profile",
    "shd",
    "up",
    "msgs",
    "err",
    "dlq",
    "ign",
    "lag",
    "state",
]
"""Columns of the default view (fits 80 columns): shd = shadow mode, msgs = entries handled,
err = validation errors, dlq = dead letters, ign = valid messages ignored on purpose (stale,
duplicate, ...; by reason in ``--wide``), lag = undelivered + unacknowledged entries."""

WIDE = [
    "service",
    "instance",
    "path",
    "profile",
    "shadow",
    "partitions",
    "uptime",
    "handled",
    "published",
    "validation errors",
    "defaults filled",
    "dead letters",
    "ignored",
    "shadow mismatches",
    "legacy-shaped in",
    "lag",
    "state",
]
"""Columns of ``--wide``."""

_WRAPPING = {"validation errors", "defaults filled", "shadow mismatches", "ignored"}
_NUMERIC = {"up", "msgs", "err", "dlq", "ign", "lag", "uptime", "handled", "published", "dead letters"}


def status_console() -> Console:
    """A console for status: the terminal's width, else ``COLUMNS``, else 160 (piped output)."""
    wide_default = not sys.stdout.isatty() and not os.environ.get("COLUMNS", "").strip().isdigit()
    return Console(width=160 if wide_default else None, highlight=False)


def compact(n: int) -> str:
    """``n`` in at most 5 characters: 999, 12.3k, 4.5M."""
    if n < 1000:
        return str(n)
    if n < 1_000_000:
        return f"{n / 1000:.1f}k" if n < 10_000 else f"{n // 1000}k"
    return f"{n / 1_000_000:.1f}M" if n < 10_000_000 else f"{n // 1_000_000}M"


def uptime(seconds: float) -> str:
    """``42s``, ``3m05s``, ``2h07m``."""
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


def _fields(by_field: Mapping[str, int], total: int) -> str:
    if not total:
        return "0"
    detail = ", ".join(f"{k}={v}" for k, v in sorted(by_field.items()))
    return f"{total} ({escape(detail)})" if detail else str(total)


def _partitions(row: Mapping[str, Any]) -> str:
    total, owned = int(row["partitions"]), row["owned"]
    if total == 1:
        return "1"
    mine = ",".join(f"p{p}" for p in owned) or "none"
    return f"{mine} of {total}"


def _state(row: Mapping[str, Any], wide: bool = True) -> str:
    if row.get("state") == "failed":  # why: on a line of its own below the table
        return f"[bold red]FAILED {row['last_report_age_s']:.0f}s ago[/]" if wide else "[bold red]FAILED[/]"
    if row.get("state") == "stopped":
        # 80 columns have no room for the age: with it the instance names folded on every row.
        return f"[dim]stopped {row['last_report_age_s']:.0f}s ago[/]" if wide else "[dim]stopped[/]"
    if row["stale"]:
        return f"[bold red]STALE {row['last_report_age_s']:.0f}s[/]"
    desired = row.get("desired_path")
    if desired and desired != row["path"]:
        # The env file asks for another path: edited, but the container was not recreated.
        return "[bold yellow]recreate[/]"
    return "[green]live[/]"


def _legacy_in(row: Mapping[str, Any]) -> str:
    shapes = row.get("wire_shape") or {}
    legacy = sum(int(v) for k, v in shapes.items() if k.startswith("received.") and k.endswith(".legacy"))
    total = sum(int(v) for k, v in shapes.items() if k.startswith("received."))
    return f"{legacy}/{total}" if total else "-"


def _cells(row: Mapping[str, Any], wide: bool) -> list[str]:
    # Cells are rich markup: escape what an instance reports about itself.
    path = f"[{'cyan' if row['path'] == 'pydantic' else 'yellow'}]{escape(row['path'])}[/]"
    profile = escape(row["profile"] or "-")
    # "cmp": an out-of-band comparator (cdb shadow) reporting under the service it checks.
    shadow = "cmp" if row.get("role") == "comparator" else "on" if row["shadow"] else "off"
    if not wide:
        return [
            escape(row["service"]),
            escape(row["instance"]),
            path,
            profile,
            shadow,
            uptime(row["uptime_s"]),
            compact(row["handled"]),
            compact(row["validation_errors"]),
            compact(row["dead_letters"]),
            compact(row.get("ignored", 0)),
            compact(row["lag"]),
            _state(row, wide=False),
        ]
    mismatches = _fields(row["shadow_by_field"], row["shadow_mismatches"]) if row["shadow"] else "-"
    later = int(row.get("shadow_later_version", 0))
    if row["shadow"] and later:
        # Apart from the mismatches: a version the legacy path cannot read is no disagreement.
        later_by = row.get("shadow_later_by_version") or {}
        mismatches += f"; later version, not compared: {_fields(later_by, later)}"
    return [
        escape(row["service"]),
        escape(row["instance"]),
        path,
        profile,
        shadow,
        _partitions(row),
        uptime(row["uptime_s"]),
        str(row["handled"]),
        str(row["published"]),
        _fields(row["validation_reasons"], row["validation_errors"]),
        _fields(row["defaults_by_field"], row["defaults_filled"]),
        str(row["dead_letters"]),
        _fields(row.get("ignored_by_reason") or {}, int(row.get("ignored", 0))),
        mismatches,
        _legacy_in(row),
        str(row["lag"]),
        _state(row),
    ]


def status_table(title: str, rows: Sequence[Mapping[str, Any]], *, wide: bool = False) -> Table:
    """The status table of ``rows`` (:func:`cdb.cli.status.instance_row` dicts)."""
    columns = WIDE if wide else ESSENTIAL
    # One space between columns and none at the edges: 11 columns fit 80 with a 15-character
    # instance name; only the instance name may fold, every other cell stays whole.
    out = Table(title=title, box=box.SIMPLE_HEAD, padding=0, show_edge=False, title_justify="left")
    for col in columns:
        whole = col != "instance" and not (wide and col in _WRAPPING)
        out.add_column(col, no_wrap=whole, overflow="fold", justify="right" if col in _NUMERIC else "left")
    for row in rows:
        out.add_row(*_cells(row, wide))
    return out
