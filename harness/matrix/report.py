"""The matrix as data: one plain dict per row (JSON for CI), Markdown, and table cells.

Every rendering comes from :func:`row_dict`, so the rich table, the JSON artifact
and the Markdown artifact always show the same thing.
"""

from __future__ import annotations

import json
from typing import Any

from core.topics import ServiceName, Topic
from harness.matrix.runner import MatrixReport, MatrixRow
from harness.matrix.verdict import business_results, parked_entries

__all__ = ["COLUMNS", "cells", "report_dict", "row_dict", "to_json", "to_markdown"]

COLUMNS = (
    "mix",
    *(s.value for s in ServiceName),
    "fault",
    "messages md/sig/ord/res",
    "results stream/db",
    "dead-lettered entries",
    "expected",
    "outcome",
)
"""Column headings of the table (messages per topic under each topic's name)."""


def row_dict(row: MatrixRow) -> dict[str, Any]:
    """One row as JSON-compatible values."""
    case, run = row.case, row.run
    out: dict[str, Any] = {
        "mix": case.mix.code,
        "spec": str(case.mix),
        "profile": "strict" if case.mix.strict else "lenient",
        "services": {s.value: case.mix.variant(s).value for s in ServiceName},
        "fault": case.fault.value if case.fault else None,
        "expected": {"outcome": case.expectation.outcome.value, "reason": case.expectation.reason},
        "ok": row.verdict.ok,
        "outcome": row.verdict.summary,
        "problems": row.verdict.problems,
        "seconds": round(row.seconds, 3),
    }
    if run is not None:
        result = run.result
        out.update(
            messages=dict(result.stream_lengths),
            # What the verdict counts (distinct entries parked), and the letters stored: more
            # than the entries when a letter was written again across a Redis restart.
            dead_lettered_entries={t.value: parked_entries(run, t) for t in Topic},
            dead_letters=dict(result.dead_letters),
            order_results=len(business_results(result.order_results)[0]),
            stored_rows=len(result.stored_rows),
            quiescent=result.quiescent,
            fault_facts={h.report.fault.value: h.report.facts for h in run.faults},
        )
        if run.workspace is not None:
            space = run.workspace
            sqlite = str(space.sqlite_file) if space.sqlite_file else None
            out["kept"] = {"key_prefix": space.keys.prefix, "schema": space.schema, "sqlite": sqlite}
    return out


def report_dict(report: MatrixReport) -> dict[str, Any]:
    """The whole report: summary, baseline row and every row."""
    return {
        "ok": report.ok,
        "data": report.data,
        "inputs": report.inputs,
        "trades": report.trades,
        "rows_total": len(report.rows),
        "rows_failed": len(report.failures),
        "seconds": round(report.seconds, 3),
        "baseline": {**row_dict(report.baseline), "baseline": True},
        "rows": [row_dict(r) for r in report.rows],
    }


def cells(row: dict[str, Any]) -> list[str]:
    """The table cells of a :func:`row_dict`, in :data:`COLUMNS` order."""
    messages = row.get("messages", {})
    stored = row.get("dead_letters", {})
    parked = {k: v for k, v in row.get("dead_lettered_entries", {}).items() if v}
    mark = "ok" if row["ok"] else "FAIL"
    return [
        row["mix"],
        *(row["services"][s.value] for s in ServiceName),
        "(baseline)" if row.get("baseline") else row["fault"] or "-",
        "/".join(str(messages.get(t.value, "-")) for t in Topic),
        f"{row.get('order_results', '-')}/{row.get('stored_rows', '-')}",
        ", ".join(_parked(k, v, stored.get(k, v)) for k, v in parked.items()) or "0",
        row["expected"]["outcome"].replace("_", "-"),
        f"{mark}: {row['outcome']}",
    ]


def _parked(topic: str, entries: int, letters: int) -> str:
    # The letters are named only when they are not one per entry (a write retried across a restart).
    return f"{topic} {entries}" if letters == entries else f"{topic} {entries} ({letters} letters)"


def to_json(report: MatrixReport) -> str:
    """The report as an indented JSON document."""
    return json.dumps(report_dict(report), indent=2, default=str) + "\n"


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def to_markdown(report: MatrixReport) -> str:
    """The report as a Markdown document: summary line, table, then every failure's problems."""
    data = report_dict(report)
    verdict = "PASSED" if report.ok else "FAILED"
    passed = data["rows_total"] - data["rows_failed"]
    lines = [
        "# cdb matrix",
        "",
        f"**{verdict}**: {passed} of {data['rows_total']} rows as expected; "
        f"{data['trades']} trades from `{data['data']}` (inputs {data['inputs']}) in {data['seconds']:.1f}s.",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    for row in [data["baseline"], *data["rows"]]:
        lines.append("| " + " | ".join(_md(c) for c in cells(row)) + " |")
    failed = [r for r in [data["baseline"], *data["rows"]] if not r["ok"]]
    if failed:
        lines += ["", "## Failures", ""]
        for row in failed:
            fault = f" under {row['fault']}" if row["fault"] else ""
            lines.append(f"- `{row['spec']}`{fault}:")
            lines += [f"  - {_md(p)}" for p in row["problems"]]
    return "\n".join(lines) + "\n"
