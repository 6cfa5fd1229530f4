"""Per-hop latency on every message: each service's ``cdb_consume_latency_seconds`` histogram
(:mod:`core.metrics_latency`), scraped from its ``/metrics`` before and after a phase.

A hop is one service finishing one input entry: the time from the entry's XADD (its id) to the
end of the consumer's batch with it (outputs published, entry acknowledged). signal counts
every market_data entry, risk every signal, execution every order, so the market_data hop
rests on every trade of the phase, not on the few that become orders. Quantiles are
interpolated inside the histogram's buckets (Prometheus's ``histogram_quantile``), so they
are as fine as the buckets (1, 2, 3, 5, 7.5, 10, 15, 20, 30, 50 ... ms).
"""

from __future__ import annotations

import asyncio
import urllib.request
from collections.abc import Mapping

from prometheus_client.parser import text_string_to_metric_families

from core.metrics_latency import BOUNDS_MS, quantile_ms
from core.topics import ServiceName
from harness.local_redis import free_port

__all__ = ["HOPS", "Hops", "free_port", "hop_summary"]

HOPS = {ServiceName.SIGNAL: "market_data", ServiceName.RISK: "signals", ServiceName.EXECUTION: "orders"}
"""The topic each consuming service's hop is measured on."""
_FAMILY = "cdb_consume_latency_seconds"

Counts = dict[str, list[float]]
"""Per topic: per-bucket (not cumulative) counts, the last one above every bound."""


def _scrape(port: int) -> Counts:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    cumulative: dict[str, dict[float, float]] = {}
    for family in text_string_to_metric_families(text):
        if family.name != _FAMILY.removesuffix("_seconds") and family.name != _FAMILY:
            continue
        for sample in family.samples:
            if sample.name.endswith("_bucket"):
                le = float(sample.labels["le"])
                cumulative.setdefault(sample.labels["topic"], {})[le] = sample.value
    out: Counts = {}
    for topic, by_le in cumulative.items():
        running = [by_le.get(b / 1000.0, 0.0) for b in BOUNDS_MS] + [by_le.get(float("inf"), 0.0)]
        out[topic] = [running[0]] + [running[i] - running[i - 1] for i in range(1, len(running))]
    return out


def hop_summary(counts: list[float]) -> dict[str, float]:
    """p50/p95/p99 in ms and the sample count of one hop's per-bucket counts."""
    return {f"p{q}": quantile_ms(counts, q / 100) for q in (50, 95, 99)} | {"samples": float(sum(counts))}


class Hops:
    """The services' metrics ports; :meth:`mark` and :meth:`since` give a phase's hop latencies."""

    def __init__(self, ports: Mapping[ServiceName, int]) -> None:
        self.ports = dict(ports)
        self._marked: dict[ServiceName, Counts] = {}

    async def _all(self) -> dict[ServiceName, Counts]:
        got = await asyncio.gather(*(asyncio.to_thread(_scrape, p) for p in self.ports.values()))
        return dict(zip(self.ports, got, strict=True))

    async def mark(self) -> None:
        """Remember every histogram as it is now (the start of a measured window)."""
        self._marked = await self._all()

    async def since(self) -> dict[str, dict[str, float]]:
        """Per hop (``<service> <topic>``): p50/p95/p99 ms and samples of the entries finished
        since :meth:`mark`."""
        now = await self._all()
        out: dict[str, dict[str, float]] = {}
        for service, topic in HOPS.items():
            if service not in now:
                continue
            after = now[service].get(topic, [])
            before = self._marked.get(service, {}).get(topic, [0.0] * len(after))
            delta = [a - b for a, b in zip(after, before, strict=True)]
            out[f"{service.value} {topic}"] = hop_summary(delta)
        return out
