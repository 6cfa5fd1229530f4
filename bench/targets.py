"""The issue's targets, evaluated on one run's figures."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

from bench.codec_cost import Costs
from bench.e2e import E2eResult
from bench.stats import Figure
from core.topics import Topic

__all__ = ["Target", "evaluate", "per_message_us"]

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


def _ratio(name: str, wanted: str, value: float, limit: float, *, at_most: bool) -> Target:
    met = value <= limit if at_most else value >= limit
    return Target(name, wanted, f"{value:.2f}x", met)


def _codec_targets(costs: Costs) -> list[Target]:
    legacy, floor = per_message_us(costs, "legacy"), per_message_us(costs, "msgspec")
    out = []
    for case in ("pydantic lenient", "pydantic strict"):
        cost = per_message_us(costs, case)
        out.append(_ratio(f"codec: {case} vs legacy", "<= 0.5x", cost / legacy, 0.5, at_most=True))
        out.append(_ratio(f"codec: {case} vs msgspec floor", "<= 6x", cost / floor, 6.0, at_most=True))
    shadow = per_message_us(costs, "shadow (lenient + legacy)")
    single = per_message_us(costs, "pydantic lenient")
    out.append(
        _ratio("codec: shadow vs its single path (lenient)", "<= 1.5x", shadow / single, 1.5, at_most=True)
    )
    return out


def _throughput_targets(rates: dict[str, Figure]) -> list[Target]:
    many = rates["publish_many"].median
    out = [
        _ratio(
            "publish_many vs FastStream pipelined",
            ">= 3x",
            many / rates["faststream_pipeline"].median,
            3.0,
            at_most=False,
        ),
        _ratio("publish_many vs naive loop", ">= 10x", many / rates["naive"].median, 10.0, at_most=False),
    ]
    for key, label in (("consume_strict", "strict"), ("consume_lenient", "lenient")):
        ours = rates[key].median
        out.append(
            _ratio(
                f"consumer ({label}) vs bare redis-py loop ({label})",
                ">= 0.8x",
                ours / rates[f"bare_{label}"].median,
                0.8,
                at_most=False,
            )
        )
        out.append(
            _ratio(
                f"consumer ({label}) vs FastStream batch",
                ">= 3x",
                ours / rates["faststream_batch"].median,
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
