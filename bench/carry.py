"""A partial run (``--only``) keeps the other sections' figures of the previous run.

BENCHMARKS.md keeps their sections as they are (:func:`bench.report.merge_document`); this
module does the same for BENCHMARKS.json and re-evaluates their targets against the current
thresholds from the saved samples, each marked with the date of the run that measured it.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench.codec_cost import Costs
from bench.stats import Figure
from bench.targets import Target, evaluate

__all__ = ["CARRIED_KEYS", "carried_targets", "load_previous"]

CARRIED_KEYS = {
    "codec": "codec_us_per_message",
    "throughput": "throughput_messages_per_s",
    "e2e": "end_to_end",
}
"""Section -> the BENCHMARKS.json key holding its figures."""


def load_previous(out: Path) -> dict[str, Any]:
    """The BENCHMARKS.json in ``out`` ({} when there is none or it does not parse)."""
    try:
        document: dict[str, Any] = json.loads((out / "BENCHMARKS.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return document


def _costs(rows: list[dict[str, Any]]) -> Costs:
    return {(r["case"], r["topic"], r["operation"]): Figure(list(r["samples"])) for r in rows}


def _rates(rows: list[dict[str, Any]]) -> dict[str, Figure]:
    return {r["key"]: Figure(list(r["samples"])) for r in rows}


def carried_targets(previous: dict[str, Any], ran: set[str]) -> list[Target]:
    """Targets of the sections not in ``ran``, from ``previous``'s figures, marked as such."""
    date = (previous.get("machine") or {}).get("date", "an earlier run")
    out: list[Target] = []
    try:
        if "codec" not in ran and previous.get(CARRIED_KEYS["codec"]):
            out += evaluate(_costs(previous[CARRIED_KEYS["codec"]]), None, None)
        if "throughput" not in ran and previous.get(CARRIED_KEYS["throughput"]):
            out += evaluate(None, _rates(previous[CARRIED_KEYS["throughput"]]), None)
    except KeyError:
        out = []  # an older layout: its figures cannot be re-evaluated; keep none rather than guess
    if "e2e" not in ran:
        out += [
            Target(t["name"], t["wanted"], t["measured"], t["met"])
            for t in previous.get("targets", [])
            if t["name"].startswith(("end to end", "shadow"))
        ]
    return [replace(t, measured=f"{t.measured} [run of {date}]") for t in out]
