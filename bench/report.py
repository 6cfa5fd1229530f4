"""BENCHMARKS.md and BENCHMARKS.json from one run's figures."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from bench.codec_cost import CASES, Costs
from bench.e2e_result import E2eResult
from bench.machine import QuietGate
from bench.notes import GAPS, METHOD, OPTIMIZED
from bench.report_e2e import (
    cpu_lines,
    curve_lines,
    e2e_extra_json,
    hop_lines,
    rate_cpu_lines,
    shadow_lines,
    stage_lines,
)
from bench.stats import Figure
from bench.summary import summary_from_json
from bench.targets import Target, paired, per_message_us
from bench.throughput import CONSUME, PUBLISH
from bench.yardstick import Yardstick
from core.topics import Topic

__all__ = ["FOLDED", "Run", "merge_document", "to_json", "to_markdown"]


@dataclass
class Run:
    """Everything one ``python -m bench`` run measured."""

    command: str
    machine: dict[str, Any]
    rounds: int
    n: int
    codec_n: int = 0
    costs: Costs | None = None
    rates: dict[str, Figure] | None = None
    e2e: list[E2eResult] | None = None
    targets: list[Target] = field(default_factory=list)
    chart: str | None = None
    load_end: tuple[float, float, float] | None = None
    gate: QuietGate | None = None
    yardstick: Yardstick | None = None
    """This run's machine against the committed run's (None: no committed run to compare)."""


FOLDED = ("## Transport (issue 3)",)
"""Sections of older scripts whose rows this run measures itself (dropped when it writes)."""


def merge_document(ours: str, existing: str | None) -> str:
    """``ours`` followed by every ``## `` section of ``existing`` that ``ours`` does not have
    (other scripts' sections, e.g. "## Scaling"), kept as they are."""
    if not existing:
        return ours
    mine = {line.strip() for line in ours.splitlines() if line.startswith("## ")}
    kept: list[str] = []
    keeping = False
    for line in existing.splitlines():
        if line.startswith("## "):
            keeping = line.strip() not in mine and line.strip() not in FOLDED
        elif line.startswith("# "):
            keeping = False
        if keeping:
            kept.append(line)
    if not kept:
        return ours
    return ours.rstrip("\n") + "\n\n" + "\n".join(kept).rstrip("\n") + "\n"


def _f(x: float, digits: int = 1) -> str:
    return "n/a" if math.isnan(x) else f"{x:,.{digits}f}"


def _codec_table(costs: Costs, rounds: int, n: int) -> list[str]:
    legacy, floor = per_message_us(costs, "legacy"), per_message_us(costs, "msgspec")
    lines = [
        "## 1. Codec cost per message",
        "",
        f"In memory, no Redis; {n:,} distinct messages per topic per round, median of {rounds} rounds "
        "(range in brackets). `from_fields`: a stream entry as redis-py returns it -> message (what a "
        "consuming service does per input); `decode`: a Pub/Sub JSON body -> message; `encode`: the "
        "body plus the stream entry of a message (what `Publisher` does per output). Per message = "
        "from_fields + encode. Shadow = `CONTRACT_SHADOW=true` on a Pydantic service (lenient primary, "
        "legacy shadow, both decode every message; 1/10: `CONTRACT_SHADOW_SAMPLE=1/10`, both "
        "decode every tenth). msgspec = Structs with the same constraints "
        "(`bench/msgspec_mirror.py`) on the same wire forms.",
        "",
        "| case | topic | from_fields us | decode us | encode us | per message us | vs legacy | vs msgspec |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for case in CASES:
        for topic in Topic:
            cell = {op: costs[(case, topic.value, op)] for op in ("from_fields", "decode", "encode")}
            total = cell["from_fields"].median + cell["encode"].median
            legacy_total = sum(costs[("legacy", topic.value, op)].median for op in ("from_fields", "encode"))
            floor_total = sum(costs[("msgspec", topic.value, op)].median for op in ("from_fields", "encode"))
            parts = [f"{_f(c.median)} ({c.spread(1)})" for c in cell.values()]
            lines.append(
                f"| {case} | {topic.value} | {' | '.join(parts)} | {_f(total)} | "
                f"{total / legacy_total:.2f}x | {total / floor_total:.1f}x |"
            )
    lines += ["", "Mean over the four topics (per message = from_fields + encode):", ""]
    lines += [
        "| case | per message us | decode only (from_fields) us | vs legacy | vs msgspec |",
        "|---|---:|---:|---:|---:|",
    ]
    for case in CASES:
        total = per_message_us(costs, case)
        decode = per_message_us(costs, case, ("from_fields",))
        lines.append(
            f"| {case} | {_f(total)} | {_f(decode)} | {total / legacy:.2f}x | {total / floor:.1f}x |"
        )
    return lines


def _throughput_table(
    title: str, rows: list[Any], rates: dict[str, Figure], base_key: str, note: str
) -> list[str]:
    base = rates[base_key].median
    lines = [
        title,
        "",
        note,
        "",
        f"| case | who | messages/s | range | us/message | vs {base_key} | configuration |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        if row.key not in rates:
            continue
        fig = rates[row.key]
        lines.append(
            f"| {row.label} | {row.kind} | {fig.median:,.0f} | {fig.spread()} | {1e6 / fig.median:.1f} | "
            f"{fig.median / base:.2f}x | {row.config} |"
        )
    return lines


def _risk_params(results: list[E2eResult]) -> str:
    if any(r.lift_limits for r in results):
        return (
            "risk's position and exposure limits lifted (`--lift-limits`: every signal becomes an order, "
            "a stress of execution), venue parameters the defaults"
        )
    every = max((r.probe_every for r in results), default=0)
    probe = (
        f"; in the latency phases every {every}th trade is a probe symbol's, whose signals flip one "
        "position and so pass the default limits (one order per 21 probe trades, `bench/e2e_probe.py`)"
        if every
        else ""
    )
    return "risk and venue parameters are the defaults (few trades become orders, as in production)" + probe


def _e2e_tables(results: list[E2eResult], seconds: float) -> list[str]:
    lines = [
        "## 4. End to end: ws -> signal -> risk -> execution on real Redis and PostgreSQL",
        "",
        "signal, risk and execution run as **one process each** (`cdb service NAME`, flags from the "
        "environment as in their containers; execution stores in a PostgreSQL database of the run's own); "
        "ws is the benchmark process (a `WsService` fed with fresh trades, `bench/e2e_load.py`). Pydantic "
        f"services use the lenient profile; {_risk_params(results)}. Capacity: ws "
        "publishes as fast as signal keeps up (at most 20,000 entries ahead); the figure is market_data "
        f"entries signal finished per second ({seconds:g} s; median of 1-s samples after a "
        f"{min(2.0, seconds / 5):g}-s warm-up, "
        "range). Latency phase: a fixed offered rate for the same time, then latency from each trade's own "
        "timestamp (carried into the signal id, the order id and the result) to the Redis entry id "
        "(server clock at XADD) of its signal and of its order result, 1-ms resolution, one clock.",
        "",
        "| setting | paths | capacity msg/s | range | offered msg/s | consumed msg/s | drained | "
        "md->result p50 / p95 / p99 / max ms (n) | md->signal p50 / p95 / p99 ms (n) |",
        "|---|---|---:|---:|---:|---:|---|---|---|",
    ]
    for r in results:
        lat, sig = r.latency(), r.latency("signals")
        lines.append(
            f"| {r.setting.name} | {r.setting.describe()} | {r.capacity.median:,.0f} | "
            f"{r.capacity.spread()} | "
            f"{r.offered:,.0f} | {r.consumed_avg:,.0f} | {'yes' if r.drained else 'no'} | "
            f"{_f(lat['p50'], 0)} / {_f(lat['p95'], 0)} / {_f(lat['p99'], 0)} / {_f(lat['max'], 0)} "
            f"({lat['samples']:,.0f}) | {_f(sig['p50'], 0)} / {_f(sig['p95'], 0)} / {_f(sig['p99'], 0)} "
            f"({sig['samples']:,.0f}) |"
        )
    lines += [
        "",
        "Stream counts at the end of each setting (both phases) and how far trade timestamps ran ahead "
        "of the clock:",
        "",
    ]
    for r in results:
        c = r.counts
        dlq = sum(v for k, v in c.items() if k.endswith("_dlq"))
        lines.append(
            f"- {r.setting.name}: {c.get('market_data_sent', 0):,} trades published, {c.get('signals', 0):,} "
            f"signals, {c.get('orders', 0):,} orders, {c.get('order_results', 0):,} results, {dlq} dead "
            f"letters; timestamps ran at most {r.max_ahead_ms} ms ahead of the clock; downstream backlog "
            f"after the capacity phase: {r.capacity_backlog}; other processes used "
            f"{r.foreign_cpu.get('capacity', 0):.0%} / {r.foreign_cpu.get('latency', 0):.0%} of the CPU "
            f"during the capacity / latency phase (attempt {r.attempts})."
        )
    extra = [
        cpu_lines(results),
        curve_lines(results),
        stage_lines(results),
        hop_lines(results),
        rate_cpu_lines(results),
        shadow_lines(results),
    ]
    for part in extra:
        if part:
            lines += ["", *part]
    lines += [
        "",
        "## 5. Memory",
        "",
        "Peak resident set size (VmHWM) of each service process over both phases of a setting:",
        "",
        "| setting | signal MB | risk MB | execution MB |",
        "|---|---:|---:|---:|",
    ]
    for r in results:
        m = r.rss_mb
        lines.append(
            f"| {r.setting.name} | {_f(m.get('signal', math.nan))} | {_f(m.get('risk', math.nan))} | "
            f"{_f(m.get('execution', math.nan))} |"
        )
    return lines


def _quiet(gate: QuietGate | None) -> str:
    if gate is None or not gate.busy:
        return ""
    calm = sum(b <= gate.threshold for b in gate.busy)
    return (
        f" Each round started once the rest of the machine used under {gate.threshold:.0%} of the CPU "
        f"(waiting up to {gate.max_wait_s:.0f} s): {calm} of {len(gate.busy)} rounds started quiet, "
        f"the busiest at {max(gate.busy):.0%}; {gate.waited_s:.0f} s spent waiting."
    )


def _speed(machine: dict[str, Any]) -> str:
    ms = machine.get("python_speed_ms")
    return "" if ms is None else f" (a fixed pure-Python workload: {ms} ms, lower is faster)"


def to_markdown(run: Run, seconds: float) -> str:
    """The whole BENCHMARKS.md."""
    m = run.machine
    pkgs = ", ".join(f"{k} {v}" for k, v in m["packages"].items())
    load_end = run.load_end or (math.nan,) * 3
    lines = [
        "# Benchmarks",
        "",
        *summary_from_json(to_json(run, seconds)),
        "",
        f"Generated by `{run.command}` on {m['date']}: {m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB, "
        f"{m['os']}, Python {m['python']}{_speed(m)}; Redis {m['redis_server']} on loopback "
        f"(PING {m['redis_ping_us']} us), "
        f"PostgreSQL {m['postgresql']}; {pkgs}. Load average (1/5/15 min) at start "
        f"{'/'.join(f'{x:.2f}' for x in m['load_average_start'])}, at end "
        f"{'/'.join(f'{x:.2f}' for x in load_end)}.{_quiet(run.gate)}",
        "",
        METHOD,
        "",
        "## Targets",
        "",
        "| target | wanted | measured | verdict |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {t.name} | {t.wanted} | {t.measured} | {'met' if t.met else '**missed**'} |" for t in run.targets
    ]
    if run.costs:
        lines += ["", *_codec_table(run.costs, run.rounds, run.codec_n)]
    if run.rates:
        note = (
            f"Median of {run.rounds} rounds (range = min-max); {run.n:,} messages per round "
            f"({max(200, run.n // 10):,} for the one-round-trip-per-message rows). market_data built by the "
            "Pydantic codec; FastStream publishes the same models with its own serialisation."
        )
        lines += ["", *_throughput_table("## 2. Publish throughput", PUBLISH, run.rates, "naive", note)]
        if {"publish_many", "faststream_pipeline_both"} <= run.rates.keys():
            same = paired(run.rates["publish_many"].samples, run.rates["faststream_pipeline_both"].samples)
            lines += [
                "",
                f"For context: doing the same work per message (PUBLISH + XADD), `publish_many` is "
                f"{same.median:.2f}x FastStream's pipelined form (rounds {same.spread(2)}); the target "
                "row compares against FastStream writing the stream alone.",
            ]
        lines += [
            "",
            *_throughput_table(
                "## 3. Consume throughput (read + decode + validate + ack)",
                CONSUME,
                run.rates,
                "faststream_batch",
                note,
            ),
        ]
        if run.chart:
            lines += [
                "",
                f"![publish, consume and end-to-end throughput, with the targets marked]({run.chart})",
            ]
    if run.e2e:
        lines += ["", *_e2e_tables(run.e2e, seconds)]
    lines += ["", OPTIMIZED, "", GAPS]
    return "\n".join(lines) + "\n"


def to_json(run: Run, seconds: float) -> dict[str, Any]:
    """The same figures, machine-readable (samples included)."""
    out: dict[str, Any] = {
        "command": run.command,
        "machine": run.machine,
        "rounds": run.rounds,
        "n": run.n,
        "codec_n": run.codec_n,
        "load_average_end": run.load_end,
        "quiet_gate": run.gate.to_json() if run.gate else None,
        "targets": [t.to_json() for t in run.targets],
    }
    if run.yardstick is not None:
        out["machine_vs_committed"] = run.yardstick.to_json()
    if run.costs:
        out["codec_us_per_message"] = [
            {"case": c, "topic": t, "operation": op, **fig.to_json()}
            for (c, t, op), fig in sorted(run.costs.items())
        ]
    if run.rates:
        rows = {r.key: r for r in (*PUBLISH, *CONSUME)}
        out["throughput_messages_per_s"] = [
            {"key": k, "label": rows[k].label, "kind": rows[k].kind, "config": rows[k].config, **f.to_json()}
            for k, f in run.rates.items()
        ]
    if run.e2e:
        out["end_to_end"] = [
            {
                "setting": r.setting.name,
                "paths": {s.value: p.value for s, p in r.setting.paths.items()},
                "seconds": seconds,
                "capacity": r.capacity.to_json(),
                "capacity_average": r.capacity_avg,
                "capacity_backlog_after": r.capacity_backlog,
                "offered_rate": r.offered,
                "consumed": r.consumed.to_json(),
                "consumed_average": r.consumed_avg,
                "drained": r.drained,
                "latency_ms_market_data_to_order_result": r.latency(),
                "latency_ms_market_data_to_signal": r.latency("signals"),
                "timestamps_ahead_ms_max": r.max_ahead_ms,
                "peak_rss_mb": r.rss_mb,
                "counts": r.counts,
                "foreign_cpu_share": r.foreign_cpu,
                "attempts": r.attempts,
                **e2e_extra_json(r),
            }
            for r in run.e2e
        ]
    return out
