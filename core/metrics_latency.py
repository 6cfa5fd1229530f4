"""How long after it was written each stream entry was finished by its consumer
(``cdb_consume_latency_seconds{service,topic}``, a Prometheus histogram).

Observed on **every** entry a consumer acknowledges: from the entry's id (the Redis server's
clock at ``XADD``, ms) to the end of the consumer's batch with it (its outputs published, the
entry acknowledged). So each hop of the pipeline has its own latency on every message it
carries (market_data at signal, signals at risk, orders at execution): the wait for the
current batch, the handling, the flush of the outputs.

prometheus-client's ``Histogram.observe`` costs ~1.2 us a call (a lock and a linear bucket
search), a fifth of the consumer's whole per-entry transport; this collector counts a batch
into plain integers (the entries of one millisecond together: ~0.2 us an entry in a busy
batch, ~0.4 us when every entry has its own millisecond) and hands prometheus-client the
totals only when scraped. One consumer task writes a collector's counts; a scrape from the HTTP
thread reads them (a torn read can only be off by the batch being counted, never corrupt).

The clock is the consuming host's wall clock against the Redis server's: on one machine the
same clock; across machines their skew is added (an age below zero counts as zero).
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections import Counter
from collections.abc import Iterator, Sequence

from prometheus_client import CollectorRegistry
from prometheus_client.core import HistogramMetricFamily, Metric

__all__ = ["BOUNDS_MS", "ConsumeLatency", "quantile_ms"]

BOUNDS_MS: tuple[float, ...] = (
    1,
    2,
    3,
    5,
    7.5,
    10,
    15,
    20,
    30,
    50,
    75,
    100,
    150,
    250,
    500,
    1_000,
    2_500,
    5_000,
    10_000,
    30_000,
)
"""Bucket upper bounds in ms (the id's clock has 1-ms resolution, so nothing finer)."""


class _Series:
    __slots__ = ("counts", "sum_ms")

    def __init__(self) -> None:
        self.counts = [0] * (len(BOUNDS_MS) + 1)  # the last one: above every bound (+Inf)
        self.sum_ms = 0.0


class ConsumeLatency:
    """The histogram of one service instance, one series per topic it consumes."""

    def __init__(self, service: str, registry: CollectorRegistry, namespace: str = "cdb") -> None:
        self.service = service
        self.name = f"{namespace}_consume_latency_seconds"
        self._series: dict[str, _Series] = {}
        registry.register(self)

    def observe_ids(self, topic: str, entry_ids: Sequence[bytes], now_ms: float | None = None) -> None:
        """Count each entry of ``entry_ids`` (raw stream ids) as finished now (or at ``now_ms``)."""
        if not entry_ids:
            return
        now = time.time() * 1000.0 if now_ms is None else now_ms
        series = self._series.get(topic)
        if series is None:
            series = self._series[topic] = _Series()
        counts, bounds, total = series.counts, BOUNDS_MS, 0.0
        # A busy batch holds many entries of the same millisecond: count each ms once.
        for ms, n in Counter([raw.partition(b"-")[0] for raw in entry_ids]).items():
            age = now - int(ms)
            age = max(age, 0.0)
            counts[bisect_left(bounds, age)] += n
            total += age * n
        series.sum_ms += total

    def quantile_ms(self, topic: str, q: float) -> float:
        """The ``q`` quantile (0-1) in ms, interpolated inside its bucket as Prometheus's
        ``histogram_quantile`` does (``nan`` with no observation)."""
        series = self._series.get(topic)
        return quantile_ms(series.counts if series else [], q)

    def collect(self) -> Iterator[Metric]:
        """The family with one series per topic (cumulative buckets, seconds)."""
        family = HistogramMetricFamily(
            self.name,
            "Time from a stream entry's XADD (its id, server clock) to the end of the consumer's "
            "batch with it (outputs published, acknowledged), per consumed topic.",
            labels=["service", "topic"],
        )
        for topic, series in list(self._series.items()):
            running, buckets = 0, []
            for bound, n in zip((*BOUNDS_MS, float("inf")), list(series.counts), strict=True):
                running += n
                buckets.append(("+Inf" if bound == float("inf") else _le(bound), float(running)))
            family.add_metric([self.service, topic], buckets, series.sum_ms / 1000.0)
        yield family

    def describe(self) -> Iterator[Metric]:
        """The family's name only, so registering does not count anything."""
        yield HistogramMetricFamily(self.name, "", labels=["service", "topic"])


def _le(bound_ms: float) -> str:
    return repr(bound_ms / 1000.0)


def quantile_ms(counts: Sequence[float], q: float, bounds: Sequence[float] = BOUNDS_MS) -> float:
    """The ``q`` quantile (0-1) of per-bucket (not cumulative) ``counts`` over ``bounds`` (ms,
    the last count above every bound), linear inside a bucket like ``histogram_quantile``;
    a quantile in the open top bucket is reported as the largest bound."""
    total = sum(counts)
    if total <= 0:
        return float("nan")
    rank, below = q * total, 0.0
    for i, n in enumerate(counts):
        if n and below + n >= rank:
            if i >= len(bounds):
                return float(bounds[-1])
            lower = float(bounds[i - 1]) if i else 0.0
            return lower + (float(bounds[i]) - lower) * (rank - below) / n
        below += n
    return float(bounds[-1])
