"""The benchmark targets, evaluated on one run's figures."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

from bench.codec_cost import SHADOW_SAMPLED, Costs
from bench.e2e_result import E2eResult
from bench.stats import Figure
from core.topics import Topic

__all__ = ["Target", "evaluate", "paired", "per_message_us"]

E2E_RATE_TARGET = 20_000
CAPACITY_TARGET = 45_000
P99_TARGET_MS = 15
P99_SAMPLES = 5_000
LOW_RATE = 1_000
LOW_RATE_P99_MS = 5
CPU_US_BEFORE = 71.2
"""Whole-pipeline CPU per market_data message (all-Pydantic, Redis excluded) when issue 19 began:
ws 26.6, signal 25.1, risk 9.1, execution 10.4 us (the first run that measured it)."""
CPU_US_BEFORE_SOURCE = "python -m bench of 2026-11-30 13:36 UTC, commit 9ba0221"
COMPARATOR_CPU_RATIO = 1.05
BARE_RATIO = 0.97
FASTSTREAM_RATIO = 2.0
FENCED_READ_RATIO = 0.6
"""A fenced read (lease check + own-pending check + XREADGROUP in one script) may cost at most
about 1.7x a plain XREADGROUP round trip: rate ratio fenced/plain >= 0.6."""
SAMPLED_SHADOW_RATIO = 1.2


@dataclass(frozen=True)
class Target:
    """One target: what it asks, what was measured, whether it was met."""

    name: str
    wanted: str
    measured: str
    met: bool

    def to_json(self) -> dict[str, Any]:
        """As a plain dict."""
        return {"name": self.name, "wanted": self.wanted, "measured": self.measured, "met": self.met}


def per_message_us(costs: Costs, case: str, operations: tuple[str, ...] = ("from_fields", "encode")) -> float:
    """Mean over the four topics of the summed medians of ``operations`` (us per message)."""
    return statistics.mean(sum(costs[(case, t.value, op)].median for op in operations) for t in Topic)


def _per_round_us(costs: Costs, case: str) -> list[float]:
    """Per message (from_fields + encode, mean over the topics) in each round."""
    rounds = len(costs[(case, Topic.MARKET_DATA.value, "encode")].samples)
    return [
        statistics.mean(
            costs[(case, t.value, "from_fields")].samples[i] + costs[(case, t.value, "encode")].samples[i]
            for t in Topic
        )
        for i in range(rounds)
    ]


def paired(a: list[float], b: list[float]) -> Figure:
    """Round-by-round ratios a/b: both rows measured in the same round, so a load swing on
    the shared machine moves both and cancels out of the ratio."""
    return Figure([x / y for x, y in zip(a, b, strict=True)])


def _ratio(name: str, wanted: str, ratio: Figure, limit: float, *, at_most: bool) -> Target:
    value = ratio.median
    met = value <= limit if at_most else value >= limit
    return Target(name, wanted, f"{value:.2f}x (rounds {ratio.spread(2)})", met)


def _codec_targets(costs: Costs) -> list[Target]:
    legacy, floor = _per_round_us(costs, "legacy"), _per_round_us(costs, "msgspec")
    out = []
    for case in ("pydantic lenient", "pydantic strict"):
        cost = _per_round_us(costs, case)
        out.append(_ratio(f"codec: {case} vs legacy", "<= 0.5x", paired(cost, legacy), 0.5, at_most=True))
        out.append(_ratio(f"codec: {case} vs msgspec floor", "<= 6x", paired(cost, floor), 6.0, at_most=True))
    shadow = paired(
        _per_round_us(costs, "shadow (lenient + legacy)"), _per_round_us(costs, "pydantic lenient")
    )
    out.append(_ratio("codec: shadow vs its single path (lenient)", "<= 1.5x", shadow, 1.5, at_most=True))
    if (SHADOW_SAMPLED, Topic.MARKET_DATA.value, "encode") in costs:
        sampled = paired(_per_round_us(costs, SHADOW_SAMPLED), _per_round_us(costs, "pydantic lenient"))
        wanted = f"<= {SAMPLED_SHADOW_RATIO}x"
        name = "codec: in-process shadow sampled 1/10 vs its single path (lenient)"
        out.append(_ratio(name, wanted, sampled, SAMPLED_SHADOW_RATIO, at_most=True))
    return out


def _throughput_targets(rates: dict[str, Figure]) -> list[Target]:
    def ratio(a: str, b: str) -> Figure:
        return paired(rates[a].samples, rates[b].samples)

    out = [
        _ratio(
            "publish_many vs FastStream pipelined",
            ">= 3x",
            ratio("publish_many", "faststream_pipeline"),
            3.0,
            at_most=False,
        ),
        _ratio("publish_many vs naive loop", ">= 10x", ratio("publish_many", "naive"), 10.0, at_most=False),
    ]
    if {"read_fenced", "read_plain"} <= rates.keys():
        out.append(
            _ratio(
                "fenced read vs plain XREADGROUP (COUNT 1, per read)",
                f">= {FENCED_READ_RATIO}x",
                ratio("read_fenced", "read_plain"),
                FENCED_READ_RATIO,
                at_most=False,
            )
        )
    for label in ("strict", "lenient"):
        out.append(
            _ratio(
                f"consumer ({label}) vs bare redis-py loop ({label})",
                f">= {BARE_RATIO}x",
                ratio(f"consume_{label}", f"bare_{label}"),
                BARE_RATIO,
                at_most=False,
            )
        )
        out.append(
            _ratio(
                f"consumer ({label}) vs FastStream batch",
                f">= {FASTSTREAM_RATIO:g}x",
                ratio(f"consume_{label}", "faststream_batch"),
                FASTSTREAM_RATIO,
                at_most=False,
            )
        )
    return out


def _pydantic_targets(r: E2eResult) -> list[Target]:
    out = [
        Target(
            "end to end all-pydantic: capacity",
            f">= {CAPACITY_TARGET:,} msg/s",
            f"{r.capacity.median:,.0f} msg/s (range {r.capacity.spread()})",
            r.capacity.median >= CAPACITY_TARGET,
        )
    ]
    sustained = r.drained and r.rate >= E2E_RATE_TARGET and r.consumed_avg >= 0.97 * r.rate
    out.append(
        Target(
            f"end to end all-pydantic: {r.rate:,.0f} msg/s offered for the whole phase",
            f"kept up (>= 97 % consumed, drained) at >= {E2E_RATE_TARGET:,}",
            f"{r.consumed_avg:,.0f} msg/s consumed",
            sustained,
        )
    )
    lat = r.latency()
    n = len(r.latency_results)
    out.append(
        Target(
            f"end to end all-pydantic: market_data -> order_result p99 at {r.rate:,.0f} msg/s",
            f"< {P99_TARGET_MS} ms over >= {P99_SAMPLES:,} samples",
            f"{lat['p99']:.0f} ms ({n:,} samples)",
            lat["p99"] < P99_TARGET_MS and n >= P99_SAMPLES,
        )
    )
    low = next((p for p in r.curve if float(p["rate"]) == LOW_RATE), None)  # type: ignore[arg-type]
    if low is not None:
        res: Any = low["results"]
        out.append(
            Target(
                f"end to end all-pydantic: market_data -> order_result p99 at {LOW_RATE:,} msg/s",
                f"< {LOW_RATE_P99_MS} ms",
                f"{res['p99']:.0f} ms ({res['samples']:,.0f} samples)",
                res["p99"] < LOW_RATE_P99_MS,
            )
        )
    if r.cpu_us:
        parts = ", ".join(f"{k} {v:.1f}" for k, v in r.cpu_us.items() if k != "pipeline")
        now = r.cpu_us["pipeline"]
        out.append(
            Target(
                "end to end all-pydantic: whole-pipeline CPU per market_data message (Redis excluded)",
                f"reported, lower than {CPU_US_BEFORE} us ({CPU_US_BEFORE_SOURCE})",
                f"{now:.1f} us ({parts}); {now / CPU_US_BEFORE:.2f}x the earlier figure",
                now < CPU_US_BEFORE,
            )
        )
    return out


def _shadow_targets(base: E2eResult, r: E2eResult) -> list[Target]:
    out = []
    if base.cpu_us.get("signal") and r.cpu_us.get("signal"):
        ratio = r.cpu_us["signal"] / base.cpu_us["signal"]
        figures = f"{ratio:.2f}x ({r.cpu_us['signal']:.1f} vs {base.cpu_us['signal']:.1f} us)"
        if r.setting.shadow == "comparator":
            out.append(
                Target(
                    "shadow out of band: signal's CPU per message with the comparator vs no shadow",
                    f"<= {COMPARATOR_CPU_RATIO}x",
                    figures,
                    ratio <= COMPARATOR_CPU_RATIO,
                )
            )
        else:
            out.append(
                Target(
                    "shadow in process (every message): signal's CPU per message vs no shadow",
                    "reported (context)",
                    figures,
                    True,
                )
            )
    if r.setting.shadow == "comparator" and r.comparator:
        most = r.comparator.get("max_backlog_at_rate")
        caught = bool(r.comparator.get("caught_up_after_latency"))
        bounded = isinstance(most, int) and most <= r.rate  # at most a second behind
        out.append(
            Target(
                f"shadow out of band: comparator keeps up at {r.rate:,.0f} msg/s offered",
                "backlog bounded (<= 1 s of input) and caught up after the phase",
                f"largest backlog {most:,} entries; caught up: {'yes' if caught else 'no'}",
                bounded and caught,
            )
        )
    return out


def _e2e_targets(results: list[E2eResult]) -> list[Target]:
    out: list[Target] = []
    base = next((r for r in results if r.setting.name == "all-pydantic"), None)
    for r in results:
        if r.setting.name == "all-pydantic":
            out += _pydantic_targets(r)
        elif r.setting.shadow and base is not None:
            out += _shadow_targets(base, r)
    return out


def evaluate(
    costs: Costs | None, rates: dict[str, Figure] | None, e2e: list[E2eResult] | None
) -> list[Target]:
    """Every target the run has figures for."""
    out: list[Target] = []
    if costs:
        out += _codec_targets(costs)
    if rates:
        out += _throughput_targets(rates)
    if e2e:
        out += _e2e_targets(e2e)
    return out
