"""The "Summary" at the top of BENCHMARKS.md: what was measured and the verdicts, in plain words.

Built from the run's targets and end-to-end figures only (the same data BENCHMARKS.json
keeps), so it can be rebuilt from a committed JSON without running anything again
(:func:`summary_from_json`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from bench.yardstick import Yardstick

__all__ = ["summary_from_json", "summary_lines"]

_GROUPS = (  # target name prefix -> what a reader calls it
    ("codec:", "decoding and encoding one message"),
    ("publish_many", "publishing"),
    ("consumer", "consuming"),
    ("end to end", "the whole pipeline"),
    ("shadow", "shadow mode beside or inside the pipeline"),
)


_LENIENT_VS_LEGACY = "codec: pydantic lenient vs legacy"


def _group(name: str) -> str:
    for prefix, label in _GROUPS:
        if name.startswith(prefix):
            return label
    return "other"


def summary_lines(
    targets: Sequence[Mapping[str, Any]],
    e2e: Sequence[Mapping[str, Any]],
    machine: Yardstick | None = None,
) -> list[str]:
    """The section's Markdown lines; ``targets`` and ``e2e`` as BENCHMARKS.json holds them,
    ``machine``: how this run's machine compares with the committed run's."""
    met = [t for t in targets if t["met"]]
    missed = [t for t in targets if not t["met"]]
    lines = [
        "## Summary",
        "",
        "What was measured: the cost of turning one message into bytes and back on each path "
        "(legacy dataclasses, Pydantic lenient and strict, shadow mode that runs both), how many "
        "messages a second one process publishes and consumes through Redis compared with "
        "FastStream and plain redis-py, and the whole pipeline (ws -> signal -> risk -> execution, "
        "each service its own process, real Redis and PostgreSQL) at full speed and at a fixed rate.",
        "",
        f"Verdicts: {len(met)} of {len(targets)} targets met.",
        "",
    ]
    told = machine.sentence() if machine is not None else ""
    if told:
        lines += [told, ""]
    for label in dict.fromkeys(_group(t["name"]) for t in targets):
        mine = [t for t in targets if _group(t["name"]) == label]
        ok = sum(1 for t in mine if t["met"])
        lines.append(f"- {label[0].upper()}{label[1:]}: {ok} of {len(mine)} met.")
    if missed:
        lines += ["", 'Missed, and why (details in "Where the time goes" below):', ""]
        lines += [f"- {t['name']}: wanted {t['wanted']}, measured {t['measured']}." for t in missed]
    if e2e:
        lines += ["", "The pipeline end to end on this 2-core machine (all processes share both cores):", ""]
        for row in e2e:
            latency = row.get("latency_ms_market_data_to_order_result") or {}
            p99 = latency.get("p99")
            capacity = (row.get("capacity") or {}).get("median", row.get("capacity_average", 0.0))
            lines.append(
                f"- {row['setting']}: {capacity:,.0f} messages/s at full speed (median); at "
                f"{row['offered_rate']:,.0f} messages/s offered it consumed {row['consumed_average']:,.0f}/s"
                + (f", trade to order result p99 {p99:.0f} ms" if isinstance(p99, int | float) else "")
                + _hops(row.get("hop_latency_ms") or {})
                + "."
            )
    ratio = next((t["measured"].split("x")[0] for t in targets if t["name"] == _LENIENT_VS_LEGACY), None)
    if ratio:
        lines += [
            "",
            f"In short: a message on the Pydantic path (lenient) costs {ratio} times what it costs on "
            "the legacy path it replaces, so migrating a service does not cost throughput; shadow mode "
            "runs both paths on every message and costs about their sum, so it is for the first days "
            "of a service's migration.",
        ]
    return lines


def _hops(hops: Mapping[str, Any]) -> str:
    """``; per hop, every message: signal p99 .. ms (n), ...`` (empty without hop figures)."""
    parts = [
        f"{name.split()[0]} p99 {d['p99']:.1f} ms ({d['samples']:,.0f})"
        for name, d in hops.items()
        if isinstance(d.get("p99"), int | float) and d["p99"] == d["p99"]
    ]
    return f"; per hop, on every message: {', '.join(parts)}" if parts else ""


def summary_from_json(document: Mapping[str, Any]) -> list[str]:
    """:func:`summary_lines` from a BENCHMARKS.json document."""
    machine = document.get("machine_vs_committed")
    return summary_lines(
        document.get("targets", []),
        document.get("end_to_end", []),
        Yardstick.from_json(machine) if machine else None,
    )
