"""The peers, configured fairly: FastStream's Redis broker and bare redis-py.

FastStream (``faststream[redis]``, pinned in the ``bench`` extra):

- ``RedisBroker(url, logger=None)``: its logging off, its default JSON serialisation of the
  Pydantic model (``MarketDataV1``), its default binary message format;
- one by one: ``await broker.publish(model, stream=name)`` (one XADD round trip each; it
  writes the stream only, no Pub/Sub copy, i.e. one command per message to our two);
- pipelined, its documented batch form for streams (``publish_batch`` only targets lists):
  ``broker.publish(model, stream=name, pipeline=pipe)`` for 1,000 messages on a
  ``pipeline(transaction=False)`` of the broker's own client, then ``await pipe.execute()``;
  for context also with ``broker.publish(model, channel=name, pipeline=pipe)`` first, i.e. the
  same two commands per message as ours (PUBLISH + XADD);
- subscriber: ``@broker.subscriber(stream=StreamSub(name, group=..., consumer=..., batch=True,
  max_records=500, last_id="0"))`` on a handler taking ``list[MarketDataV1]``: FastStream reads
  with XREADGROUP, validates each batch with Pydantic and acknowledges after the handler.

bare redis-py (the client's own forms, no framework):

- publish: ``client.pipeline(transaction=False)`` with ``PUBLISH`` + ``XADD`` per message,
  executed every 1,000 messages, the same codec output as our rows;
- consume: ``XREADGROUP COUNT 500`` + ``codec.from_fields`` per entry + one ``XACK`` per batch.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis

from core.codec import Codec
from core.topics import KeySpace, Topic

__all__ = [
    "bare_consume",
    "bare_publish_pipeline",
    "faststream_consume",
    "faststream_publish_one_by_one",
    "faststream_publish_pipelined",
]

TOPIC = Topic.MARKET_DATA
CHUNK = 1_000
BATCH = 500


def _broker(url: str) -> Any:
    from faststream.redis import RedisBroker

    return RedisBroker(url, logger=None)


async def faststream_publish_one_by_one(url: str, messages: Sequence[Any], stream: str) -> float:
    """Messages per second through ``broker.publish(..., stream=...)``, one round trip each."""
    broker = _broker(url)
    await broker.connect()
    try:
        start = time.perf_counter()
        for m in messages:
            await broker.publish(m, stream=stream)
        return len(messages) / (time.perf_counter() - start)
    finally:
        await broker.stop()


async def faststream_publish_pipelined(
    url: str, messages: Sequence[Any], stream: str, channel: str | None = None
) -> float:
    """Messages per second through ``broker.publish(..., pipeline=pipe)``, 1,000 per execute;
    with ``channel`` each message is also published there (the two commands ours sends)."""
    broker = _broker(url)
    client = await broker.connect()
    try:
        start = time.perf_counter()
        for i in range(0, len(messages), CHUNK):
            async with client.pipeline(transaction=False) as pipe:
                for m in messages[i : i + CHUNK]:
                    if channel is not None:
                        await broker.publish(m, channel=channel, pipeline=pipe)
                    await broker.publish(m, stream=stream, pipeline=pipe)
                await pipe.execute()
        return len(messages) / (time.perf_counter() - start)
    finally:
        await broker.stop()


async def faststream_consume(url: str, messages: Sequence[Any], stream: str, timeout_s: float = 120) -> float:
    """Messages per second through a FastStream batch ``StreamSub`` consumer-group subscriber.

    The stream is filled first (FastStream's own format, pipelined); the clock runs from
    ``broker.start()`` until the handler has seen every message.
    """
    from faststream.redis import StreamSub

    from core.domain.contracts import MarketDataV1

    await faststream_publish_pipelined(url, messages, stream)
    broker = _broker(url)
    seen = 0
    done = asyncio.Event()

    @broker.subscriber(
        stream=StreamSub(stream, group="bench", consumer="c1", batch=True, max_records=BATCH, last_id="0")
    )
    async def handle(batch: list[MarketDataV1]) -> None:
        nonlocal seen
        seen += len(batch)
        if seen >= len(messages):
            done.set()

    try:
        start = time.perf_counter()
        await broker.start()
        await asyncio.wait_for(done.wait(), timeout_s)
        return len(messages) / (time.perf_counter() - start)
    finally:
        await broker.stop()


async def bare_publish_pipeline(
    client: aioredis.Redis, codec: Codec, messages: Sequence[Any], keys: KeySpace
) -> float:
    """Messages per second through redis-py's own pipeline: PUBLISH + XADD, 1,000 per execute."""
    channel, stream = keys.channel(TOPIC), keys.stream(TOPIC)
    start = time.perf_counter()
    for i in range(0, len(messages), CHUNK):
        pipe = client.pipeline(transaction=False)
        for m in messages[i : i + CHUNK]:
            pipe.publish(channel, codec.encode(TOPIC, m))
            pipe.xadd(stream, codec.to_fields(TOPIC, m))  # type: ignore[arg-type]
        await pipe.execute()
    return len(messages) / (time.perf_counter() - start)


async def bare_consume(client: aioredis.Redis, codec: Codec, n: int, keys: KeySpace) -> float:
    """Messages per second through XREADGROUP + ``codec.from_fields`` + one XACK per batch,
    over a stream already holding ``n`` entries (a group created at ``0``)."""
    stream, group = keys.stream(TOPIC), "bare"
    await client.xgroup_create(stream, group, id="0", mkstream=True)
    decode = codec.from_fields
    done = 0
    start = time.perf_counter()
    while done < n:
        reply = await client.xreadgroup(group, "c1", {stream: ">"}, count=BATCH, block=10)
        if not reply:
            continue
        entries = reply[0][1]
        for _, fields in entries:
            decode(TOPIC, fields)
        await client.xack(stream, group, *[entry_id for entry_id, _ in entries])
        done += len(entries)
    return n / (time.perf_counter() - start)
