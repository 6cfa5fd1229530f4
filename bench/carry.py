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

__all__ = ["CARRIED_KEYS", "carried_targets", "load_previous", "section_dates"]

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


def section_dates(previous: dict[str, Any], ran: set[str], today: str) -> dict[str, str]:
    """When each section's figures were measured: ``today`` for those in ``ran``."""
    earlier = previous.get("section_dates") or {}
    fallback = (previous.get("machine") or {}).get("date", "an earlier run")
    return {s: today if s in ran else earlier.get(s, fallback) for s in CARRIED_KEYS}


def _marked(target: Target, date: str) -> Target:
    if "[run of " in target.measured:
        return target  # carried before: it already names its run
    return replace(target, measured=f"{target.measured} [run of {date}]")


def carried_targets(previous: dict[str, Any], ran: set[str]) -> list[Target]:
    """Targets of the sections not in ``ran``, from ``previous``'s figures, each marked with
    the date of the run that measured it."""
    dates = section_dates(previous, ran, "")
    out: list[Target] = []
    try:
        if "codec" not in ran and previous.get(CARRIED_KEYS["codec"]):
            codec = evaluate(_costs(previous[CARRIED_KEYS["codec"]]), None, None)
            out += [_marked(t, dates["codec"]) for t in codec]
        if "throughput" not in ran and previous.get(CARRIED_KEYS["throughput"]):
            rates = evaluate(None, _rates(previous[CARRIED_KEYS["throughput"]]), None)
            out += [_marked(t, dates["throughput"]) for t in rates]
    except KeyError:
        out = []  # an older layout: its figures cannot be re-evaluated; keep none rather than guess
    if "e2e" not in ran:
        out += [
            _marked(Target(t["name"], t["wanted"], t["measured"], t["met"]), dates["e2e"])
            for t in previous.get("targets", [])
            if t["name"].startswith(("end to end", "shadow"))
        ]
    return out
