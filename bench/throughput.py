"""Publish and consume throughput on the real Redis: the project's forms and the peers'.

Every row moves market_data messages built by the Pydantic codec (FastStream rows: the same
``MarketDataV1`` models, serialised by FastStream). Per-message (one round trip each) rows
publish ``n/10`` messages, the rest ``n``. Every row uses a fresh key prefix and deletes it;
the rows run in a different (seeded) order each round, so none always follows the same one.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import redis
import redis.asyncio as aioredis

from bench import peers
from bench.machine import QuietGate, fixtures_frozen
from bench.messages import built
from bench.stats import Figure
from bench.transport import (
    _NullCodec,
    bench_consume,
    bench_naive,
    bench_publish,
    bench_publish_many,
    bench_publish_message,
    bench_reads,
)
from core.codec import Codec, build_codec
from core.redis import Publisher, connect_async, connect_sync
from core.topics import CodecPath, KeySpace, Profile, ServiceName, Topic

__all__ = ["CONSUME", "PUBLISH", "Row", "fence_jobs", "measure_throughput"]

TOPIC = Topic.MARKET_DATA


@dataclass(frozen=True)
class Row:
    """One throughput row: its label, who it is, and how it is configured."""

    key: str
    label: str
    kind: str  # "project", "peer" or "reference"
    config: str


PUBLISH = [
    Row(
        "naive",
        "naive loop: publish + xadd per message (two round trips)",
        "reference",
        "blocking redis-py, 2 round trips per message",
    ),
    Row(
        "publish_message",
        "publish_message",
        "project",
        "blocking, PUBLISH + XADD in 1 round trip per message",
    ),
    Row("publish", "Publisher.publish", "project", "asyncio, 1 round trip per message"),
    Row(
        "publish_many",
        "Publisher.publish_many",
        "project",
        "asyncio, PUBLISH + XADD packed by hand, 1,000 per round trip, next chunk packed while Redis works",
    ),
    Row(
        "redis_py_pipeline",
        "redis-py pipeline (PUBLISH + XADD)",
        "peer",
        "redis.asyncio pipeline(transaction=False), 1,000 messages per execute, same codec output",
    ),
    Row(
        "faststream_one",
        "FastStream publish(stream=) one by one",
        "peer",
        "RedisBroker(logger=None), XADD only (no Pub/Sub copy), 1 round trip per message",
    ),
    Row(
        "faststream_pipeline",
        "FastStream publish(stream=, pipeline=pipe)",
        "peer",
        "RedisBroker(logger=None), XADD only, pipeline(transaction=False), 1,000 per execute",
    ),
    Row(
        "faststream_pipeline_both",
        "FastStream publish(channel=) + publish(stream=), pipelined",
        "peer",
        "as above, plus the Pub/Sub copy: PUBLISH + XADD per message, the work of our rows (context)",
    ),
]
CONSUME = [
    Row(
        "consume_legacy",
        "StreamConsumer, legacy",
        "project",
        "XREADGROUP COUNT 500, from_fields, XACK per batch",
    ),
    Row("consume_lenient", "StreamConsumer, pydantic lenient", "project", "as above"),
    Row("consume_strict", "StreamConsumer, pydantic strict", "project", "as above"),
    Row(
        "consume_noop",
        "StreamConsumer, no-op codec (transport only)",
        "reference",
        "as above, decodes nothing",
    ),
    Row(
        "consume_noop_fenced",
        "StreamConsumer, no-op codec, fenced (partition lease held)",
        "reference",
        "as above, every read and ack inside the lease-checking script (core.redis.fence)",
    ),
    Row(
        "read_plain",
        "one read per entry: XREADGROUP COUNT 1",
        "reference",
        "GroupIO.read_new(1), no lease: one round trip per entry, nothing decoded or acked",
    ),
    Row(
        "read_fenced",
        "one read per entry: fenced script COUNT 1",
        "reference",
        "as above through the script: GET lease, own-pending check, XREADGROUP > (per-read cost of fencing)",
    ),
    Row(
        "bare_legacy",
        "bare redis-py loop, legacy",
        "peer",
        "XREADGROUP COUNT 500 + codec.from_fields + XACK per batch, no ledger/metrics/dead letters",
    ),
    Row(
        "bare_lenient",
        "bare redis-py loop, pydantic lenient",
        "peer",
        "as above",
    ),
    Row(
        "bare_strict",
        "bare redis-py loop, pydantic strict",
        "peer",
        "XREADGROUP COUNT 500 + codec.from_fields + XACK per batch, no ledger/metrics/dead letters",
    ),
    Row(
        "faststream_batch",
        "FastStream StreamSub batch subscriber",
        "peer",
        "batch=True, max_records=500, group, handler list[MarketDataV1], RedisBroker(logger=None)",
    ),
]


def _clean(client: redis.Redis, keys: KeySpace) -> None:
    found = list(client.scan_iter(match=keys.all_keys_pattern(), count=1_000))
    if found:
        client.unlink(*found)


async def _fill(client: aioredis.Redis, codec: Codec, n: int, keys: KeySpace) -> None:
    await Publisher(client, codec, keys=keys, service=ServiceName.WS).publish_many(
        TOPIC, built(codec, TOPIC, n)
    )


def fence_jobs(client: aioredis.Redis, n: int) -> dict[str, Callable[[KeySpace], Awaitable[float]]]:
    """The rows pricing fencing: the no-op consumer holding a lease, and single reads plain and
    fenced (``n/10`` reads: one round trip each)."""
    reads = max(200, n // 10)
    return {
        "consume_noop_fenced": lambda k: bench_consume(client, _NullCodec(), n, k, fenced=True),  # type: ignore[arg-type]
        "read_plain": lambda k: bench_reads(client, reads, k, fenced=False),
        "read_fenced": lambda k: bench_reads(client, reads, k, fenced=True),
    }


async def measure_throughput(
    url: str, n: int, rounds: int, gate: QuietGate | None = None
) -> dict[str, Figure]:
    """Messages per second of every row (``rounds`` samples each; each row starts once
    ``gate`` finds the machine quiet)."""
    sync, client = connect_sync(url), connect_async(url)
    codec = build_codec(CodecPath.PYDANTIC, Profile.STRICT)
    small, full = built(codec, TOPIC, max(200, n // 10)), built(codec, TOPIC, n)
    consumers = {
        "consume_legacy": build_codec(CodecPath.LEGACY),
        "consume_lenient": build_codec(CodecPath.PYDANTIC, Profile.LENIENT),
        "consume_strict": codec,
        "consume_noop": _NullCodec(),
    }
    out: dict[str, Figure] = {}

    async def run(key: str, fn: Callable[[KeySpace], Awaitable[float] | float]) -> None:
        keys = KeySpace(f"cdbbench:{uuid.uuid4().hex[:8]}:")
        if gate is not None:
            gate.wait()
        try:
            result = fn(keys)
            rate = await result if not isinstance(result, float) else result
            out.setdefault(key, Figure()).add(rate)
        finally:
            _clean(sync, keys)

    async def consume(keys: KeySpace, consumer: Codec) -> float:
        return await bench_consume(client, consumer, n, keys)  # fills the stream itself

    async def bare(keys: KeySpace, consumer: Codec) -> float:
        await _fill(client, codec, n, keys)
        return await peers.bare_consume(client, consumer, n, keys)

    try:
        jobs: dict[str, Callable[[KeySpace], Awaitable[float] | float]] = {
            "naive": lambda k: bench_naive(sync, codec, small, k),
            "publish_message": lambda k: bench_publish_message(sync, codec, small, k),
            "publish": lambda k: bench_publish(client, codec, small, k),
            "publish_many": lambda k: bench_publish_many(client, codec, full, k),
            "redis_py_pipeline": lambda k: peers.bare_publish_pipeline(client, codec, full, k),
            "faststream_one": lambda k: peers.faststream_publish_one_by_one(url, small, k.stream(TOPIC)),
            "faststream_pipeline": lambda k: peers.faststream_publish_pipelined(url, full, k.stream(TOPIC)),
            "faststream_pipeline_both": lambda k: peers.faststream_publish_pipelined(
                url, full, k.stream(TOPIC), k.channel(TOPIC)
            ),
            "faststream_batch": lambda k: peers.faststream_consume(url, full, k.stream(TOPIC)),
        }
        for key, consumer in consumers.items():
            jobs[key] = lambda k, c=consumer: consume(k, c)  # type: ignore[misc]
        jobs.update(fence_jobs(client, n))
        for path in ("legacy", "lenient", "strict"):
            jobs[f"bare_{path}"] = lambda k, c=consumers[f"consume_{path}"]: bare(k, c)  # type: ignore[misc]
        order = list(jobs)
        shuffle = random.Random(11).shuffle
        with fixtures_frozen():
            for _ in range(rounds):
                shuffle(order)  # a new order each round: no row always follows the same neighbour
                for key in order:
                    await run(key, jobs[key])
    finally:
        sync.close()
        await client.aclose()
    return out
