"""``cdb matrix --versions``: the version matrix's table, JSON and exit status.

Exit status: 0 when every version mix matched the baseline, 1 when any did not.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.table import Table

from cdb.cli.interrupt import interruptible
from cdb.cli.output import console, print_json

if TYPE_CHECKING:
    from harness.matrix.runner import MatrixConfig
    from harness.matrix.versions import VersionRow

__all__ = ["run_versions"]


def _as_dict(row: VersionRow) -> dict[str, Any]:
    out: dict[str, Any] = {
        "writes": row.writes,
        "ok": row.ok,
        "expectation": row.expectation,
        "summary": row.summary,
        "problems": row.problems,
    }
    if row.kept_prefix is not None:
        out["kept_prefix"] = row.kept_prefix
        out["kept_store"] = row.kept_store
    return out


def run_versions(config: MatrixConfig, *, as_json: bool, json_out: Path | None) -> None:
    """Run every version mix, print the table (or JSON), exit 1 when a mix did not match."""
    from harness.matrix.versions import EXPECTATION, run_version_matrix, version_mixes

    total = len(version_mixes())

    def progress(row: VersionRow) -> None:
        if not as_json:
            mark = "ok" if row.ok else "FAILED"
            console.print(f"  {mark}: {row.label}", markup=False)

    if not as_json:
        console.print(f"{total} version mixes; every one expected to: {EXPECTATION}", markup=False)
    # SIGTERM: StoppedBySigtermError reaches `cdb matrix`, which says so for both matrices.
    rows = asyncio.run(interruptible(lambda _: run_version_matrix(config, on_row=progress)))
    data = {"expectation": EXPECTATION, "rows": [_as_dict(r) for r in rows], "ok": all(r.ok for r in rows)}
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    if as_json:
        print_json(data)
    else:
        table = Table(title="cdb matrix --versions (version written per producer)")
        for column in ("ws", "signal", "risk", "execution", "outcome"):
            table.add_column(column)
        for row in rows:
            table.add_row(*row.writes.values(), row.summary, style=None if row.ok else "bold red")
        console.print(table)
        for row in rows:
            for problem in row.problems:
                console.print(f"  {row.label}: {problem}", markup=False)
        passed = sum(r.ok for r in rows)
        console.print(f"{passed} of {len(rows)} version mixes as expected")
        for row in rows:
            if row.kept_prefix is not None:
                where = f"key prefix {row.kept_prefix!r}, results in {row.kept_store}"
                console.print(f"kept {row.label}: {where}", markup=False)
    if not data["ok"]:
        raise SystemExit(1)
