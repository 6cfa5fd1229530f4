"""The end-to-end report's newer parts: CPU per message, the latency curve, shadow beside
or inside the pipeline (BENCHMARKS.md section 4, BENCHMARKS.json ``end_to_end``)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from bench.e2e_load import STAGES
from bench.e2e_result import E2eResult

__all__ = [
    "cpu_lines",
    "curve_lines",
    "e2e_extra_json",
    "hop_lines",
    "rate_cpu_lines",
    "shadow_lines",
    "stage_lines",
]

_PROCS = ("ws", "signal", "risk", "execution", "comparator", "redis")


def _f(x: Any, digits: int = 0) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:,.{digits}f}"


def _lat(d: Any) -> str:
    return f"{_f(d['p50'])} / {_f(d['p99'])} ({_f(d['samples'])})"


def cpu_lines(results: list[E2eResult]) -> list[str]:
    """CPU microseconds per market_data message per process over the capacity phase."""
    rows = [r for r in results if r.cpu_us]
    if not rows:
        return []
    cols = [p for p in _PROCS if any(p in r.cpu_us for r in rows)]
    lines = [
        "CPU time per market_data message over the capacity phase, from each process's own utime + "
        "stime (/proc), divided by the market_data entries signal finished: comparable across "
        "machines. ws = the benchmark process (it builds and publishes the trades); pipeline = every "
        "process but Redis.",
        "",
        "| setting | " + " | ".join(f"{c} us" for c in cols) + " | pipeline us (Redis excluded) |",
        "|---|" + "---:|" * (len(cols) + 1),
    ]
    for r in rows:
        cells = " | ".join(_f(r.cpu_us.get(c), 1) for c in cols)
        lines.append(f"| {r.setting.name} | {cells} | {_f(r.cpu_us.get('pipeline'), 1)} |")
    return lines


def curve_lines(results: list[E2eResult]) -> list[str]:
    """Latency p50 / p99 at each offered rate."""
    rows = [(r, p) for r in results for p in r.curve]
    if not any(len(r.curve) > 1 for r in results):
        return []
    lines = [
        "Latency curve: a fixed rate asked of ws per point (the headline rate is the setting's "
        "latency phase; a low rate's point runs longer, until the probe can make a few hundred "
        "orders), what ws managed to offer, and latency p50 / p99 in ms (samples). Offered below "
        "asked means the benchmark's own ws process was short of CPU.",
        "",
        "| setting | asked msg/s | seconds | offered msg/s | consumed msg/s | drained "
        "| md->result p50 / p99 (n) | md->signal p50 / p99 (n) |",
        "|---|---:|---:|---:|---:|---|---|---|",
    ]
    for r, p in rows:
        seconds = float(p.get("seconds") or 0)  # type: ignore[arg-type]
        lines.append(
            f"| {r.setting.name} | {_f(p['rate'])} | {seconds:.0f} | {_f(p['offered'])} | "
            f"{_f(p['consumed'])} | "
            f"{'yes' if p['drained'] else 'no'} | {_lat(p['results'])} | {_lat(p['signals'])} |"
        )
    return lines


_HOP_NAMES = ("signal market_data", "risk signals", "execution orders")


def hop_lines(results: list[E2eResult]) -> list[str]:
    """Per-hop latency (p50 / p99 ms and samples) at each offered rate, from every entry."""
    intro = (
        "Latency per hop, on every message: each service's `cdb_consume_latency_seconds` histogram "
        "(from an input entry's XADD, its id, to the end of the batch that finished it: outputs "
        "published, entry acknowledged), read from its /metrics before and after the window (after "
        "the warm-up, through the drain). signal's hop counts every market_data entry, risk's every "
        "signal, execution's every order. p50 / p99 in ms (samples), interpolated inside the "
        "histogram's buckets (1, 2, 3, 5, 7.5, 10, 15, 20, 30, 50 ... ms)."
    )
    return _point_table(results, "hops", intro, [(f"{h} p50 / p99 (n)", h) for h in _HOP_NAMES], _hop)


def stage_lines(results: list[E2eResult]) -> list[str]:
    """market_data -> order_result split into its stages, on the very samples of the curve."""
    intro = (
        "Where market_data -> order_result goes, on the same samples: each result's latency split "
        "where its signal and its order were written (their stream ids: "
        "`bench.e2e_load.read_window`). trade -> signal is ws and signal, signal -> order risk, "
        "order -> result execution (up to its results' publish: its marks' commit and ack come "
        "after). p50 / p99 / mean in ms (samples); ids are 1 ms apart at best, so the mean is "
        "the sharper figure."
    )
    return _point_table(results, "stages", intro, [(f"{s} p50 / p99 / mean (n)", s) for s in STAGES], _stage)


def rate_cpu_lines(results: list[E2eResult]) -> list[str]:
    """CPU microseconds per market_data message per process at each offered rate."""
    points = [p.get("cpu_us") for r in results for p in r.curve]
    cols = [c for c in (*_PROCS, "pipeline") if any(isinstance(d, dict) and c in d for d in points)]
    intro = (
        "CPU time per market_data message at each offered rate, as in the capacity table but over "
        "the point's own window (warm-up included; the market_data entries signal finished in it). "
        "At a low rate each wake of a service carries few entries, so its fixed cost per wake "
        "(the round trips, the event loop) shows here and not at full speed."
    )
    return _point_table(results, "cpu_us", intro, [(f"{c} us", c) for c in cols], lambda v: _f(v, 1))


def _point_table(
    results: list[E2eResult], key: str, intro: str, columns: list[tuple[str, str]], cell: Callable[[Any], str]
) -> list[str]:
    """One row per curve point that has ``key``: its ``(heading, name)`` columns, each ``cell``-ed."""
    rows = [(r, p) for r in results for p in r.curve if p.get(key)]
    if not rows:
        return []
    lines = [
        intro,
        "",
        "| setting | asked msg/s | " + " | ".join(heading for heading, _ in columns) + " |",
        "|---|---:|" + "---|" * len(columns),
    ]
    for r, p in rows:
        values: Any = p[key]
        cells = " | ".join(cell(values.get(name)) for _, name in columns)
        lines.append(f"| {r.setting.name} | {_f(p['rate'])} | {cells} |")
    return lines


def _stage(d: Any) -> str:
    if not d or not d.get("samples"):
        return "n/a"
    return f"{_f(d['p50'])} / {_f(d['p99'])} / {_f(d['mean'], 2)} ({_f(d['samples'])})"


def _hop(d: Any) -> str:
    if not d:
        return "n/a"
    return f"{_f(d['p50'], 1)} / {_f(d['p99'], 1)} ({_f(d['samples'])})"


def shadow_lines(results: list[E2eResult]) -> list[str]:
    """The comparator's lag and what it and in-process shadow cost signal."""
    base = next((r for r in results if r.setting.name == "all-pydantic"), None)
    rows = [r for r in results if r.setting.shadow]
    if not rows:
        return []
    lines = [
        "Shadow mode end to end (signal's input, market_data): `all-pydantic+comparator` runs "
        "`cdb shadow signal` as a fifth process on the same 2 cores; `all-pydantic+inproc-shadow` "
        "sets CONTRACT_SHADOW=true in signal.",
        "",
        "| setting | signal us/msg | vs all-pydantic | comparator us/msg | comparator backlog "
        "after capacity | largest comparator backlog at the offered rate | caught up |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        ratio = (
            f"{r.cpu_us['signal'] / base.cpu_us['signal']:.2f}x"
            if base is not None and base.cpu_us.get("signal") and r.cpu_us.get("signal")
            else "n/a"
        )
        c = r.comparator
        caught = (
            f"{'yes' if c.get('caught_up_after_capacity') else 'no'} / "
            f"{'yes' if c.get('caught_up_after_latency') else 'no'}"
            if c
            else "-"
        )
        lines.append(
            f"| {r.setting.name} | {_f(r.cpu_us.get('signal'), 1)} | {ratio} | "
            f"{_f(r.cpu_us.get('comparator'), 1)} | {_f(c.get('backlog_after_capacity'))} | "
            f"{_f(c.get('max_backlog_at_rate'))} | {caught} |"
        )
    return lines


def e2e_extra_json(r: E2eResult) -> dict[str, Any]:
    """The newer figures of one setting, for BENCHMARKS.json."""
    return {
        "shadow": r.setting.shadow,
        "lift_limits": r.lift_limits,
        "probe_every": r.probe_every,
        "probe_primed": r.probe_primed,
        "hop_latency_ms": r.hops,
        "cpu_us_per_market_data_message": r.cpu_us,
        "latency_curve": r.curve,
        "comparator": r.comparator,
    }
