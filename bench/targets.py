"""The benchmark targets, evaluated on one run's figures."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

from bench.codec_cost import Costs
from bench.e2e import E2eResult
from bench.stats import Figure
from core.topics import Topic

__all__ = ["Target", "evaluate", "paired", "per_message_us"]

E2E_RATE_TARGET = 20_000
P99_TARGET_MS = 50


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
    for label in ("strict", "lenient"):
        out.append(
            _ratio(
                f"consumer ({label}) vs bare redis-py loop ({label})",
                ">= 0.8x",
                ratio(f"consume_{label}", f"bare_{label}"),
                0.8,
                at_most=False,
            )
        )
        out.append(
            _ratio(
                f"consumer ({label}) vs FastStream batch",
                ">= 3x",
                ratio(f"consume_{label}", "faststream_batch"),
                3.0,
                at_most=False,
            )
        )
    return out


def _e2e_targets(results: list[E2eResult]) -> list[Target]:
    out = []
    for r in results:
        if r.setting.name != "all-pydantic":
            continue
        p99 = r.latency()["p99"]
        out.append(
            Target(
                "end to end all-pydantic: capacity",
                f">= {E2E_RATE_TARGET:,} msg/s",
                f"{r.capacity.median:,.0f} msg/s",
                r.capacity.median >= E2E_RATE_TARGET,
            )
        )
        sustained = r.drained and r.rate >= E2E_RATE_TARGET and r.consumed_avg >= 0.97 * r.rate
        out.append(
            Target(
                f"end to end all-pydantic: {r.rate:,.0f} msg/s offered for the whole phase",
                f"kept up (>= 97 % consumed, drained) at >= {E2E_RATE_TARGET:,}",
                f"{r.consumed_avg:,.0f} msg/s consumed",
                sustained,
            )
        )
        out.append(
            Target(
                "end to end all-pydantic: market_data -> order_result p99",
                f"< {P99_TARGET_MS} ms",
                f"{p99:.0f} ms ({len(r.latency_results)} samples)",
                p99 < P99_TARGET_MS,
            )
        )
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
