"""``cdb_consume_latency_seconds``: every entry a consumer acknowledges is counted once, by the
time from its XADD (its id) to the end of the batch that finished it."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from core.codec import CodecMode, codec_for_mode
from core.metrics import ServiceMetrics
from core.metrics_latency import quantile_ms
from core.redis import StreamConsumer
from core.topics import KeySpace, ServiceName, Topic
from tests.transport_helpers import Collector, make_messages, poll_until

NOW_MS = 1_767_225_600_000.0


def _buckets(metrics: ServiceMetrics, topic: str) -> dict[str, float]:
    """``le`` -> cumulative count, from the /metrics exposition."""
    text = generate_latest(metrics.registry).decode()
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "cdb_consume_latency_seconds_bucket" and sample.labels["topic"] == topic:
                out[sample.labels["le"]] = sample.value
    return out


def test_consume_latency__entry_ages__land_in_their_buckets_cumulatively_with_a_sum_in_seconds() -> None:
    metrics = ServiceMetrics("signal")
    ages = [0.5, 4.0, 4.0, 40.0, 99_000.0, -3.0]  # ms; -3: a clock behind the server's counts as 0
    ids = [f"{int(NOW_MS - a)}-{i}".encode() for i, a in enumerate(ages)]
    metrics.consume_latency.observe_ids("market_data", ids, now_ms=NOW_MS)
    buckets = _buckets(metrics, "market_data")
    assert buckets["0.001"] == 2  # 0.5 ms is 1 ms at the id's whole-ms resolution, -3 ms is 0
    assert buckets["0.005"] == 4
    assert buckets["0.05"] == 5
    assert buckets["30.0"] == 5
    assert buckets["+Inf"] == 6
    assert metrics.consume_latency.quantile_ms("market_data", 0.5) == pytest.approx(4.0, abs=1.0)


def test_quantile_ms__interpolates_inside_a_bucket_and_caps_at_the_top_bound() -> None:
    bounds = (10.0, 20.0)
    assert quantile_ms([0, 10, 0], 0.5, bounds) == pytest.approx(15.0)
    assert quantile_ms([10, 0, 0], 1.0, bounds) == pytest.approx(10.0)
    assert quantile_ms([0, 0, 5], 0.99, bounds) == 20.0
    assert quantile_ms([0, 0, 0], 0.5, bounds) != quantile_ms([0, 0, 0], 0.5, bounds)  # nan


@pytest.mark.integration
async def test_consumer__every_acknowledged_entry__is_counted_once_dead_letters_included(
    redis_async: aioredis.Redis, keys: KeySpace
) -> None:
    codec = codec_for_mode(CodecMode.LENIENT)
    stream = keys.stream(Topic.MARKET_DATA)
    for message in make_messages(codec, Topic.MARKET_DATA, 40):
        await redis_async.xadd(stream, codec.to_fields(Topic.MARKET_DATA, message))  # type: ignore[arg-type]
    await redis_async.xadd(stream, {"symbol": "not a trade"})  # refused: dead-lettered, acked
    metrics = ServiceMetrics("signal")
    consumer = StreamConsumer(
        redis_async,
        topic=Topic.MARKET_DATA,
        service=ServiceName.SIGNAL,
        codec=codec,
        keys=keys,
        instance="latency-1",
        batch_size=16,
        metrics=metrics,
    )
    await consumer.ensure_group()
    handled = Collector()
    await poll_until(lambda: consumer.poll_once(handled), lambda: len(handled.ids) == 40)
    await consumer.poll_once(handled)  # whatever is left of the last batch
    assert _buckets(metrics, "market_data")["+Inf"] == 41
    assert _buckets(metrics, "signals") == {}
