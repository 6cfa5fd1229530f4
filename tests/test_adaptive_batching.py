"""Batching adapts to the input: a quiet pipeline adds no waiting (one trade goes out, one entry
is handled, without a further message, a count or a timer), a busy one still batches (what is
queued goes out together, in fewer round trips than messages)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis.asyncio as aioredis

from core.codec import CodecMode, codec_for_mode
from core.redis import StreamConsumer
from core.settings import ServiceSettings
from core.topics import KeySpace, ServiceName, Topic
from services.runtime import ServiceContext
from services.ws.outbox import Outbox, Overflow
from services.ws.service import WsService
from services.ws.trades import Side, Trade
from tests.transport_helpers import BASE_MS, Collector, make_messages

pytestmark = pytest.mark.integration

LIVENESS_S = 60.0
"""A bound on waiting for something that must happen at once: only a hang reaches it."""


def _trade(i: int) -> Trade:
    return Trade(
        symbol="BTC/USDT",
        price=100.0 + i,
        volume=0.5,
        side=Side.BUY,
        timestamp=BASE_MS + i,
        trade_id=f"t-{i}",
    )


class _CountedWs(WsService):
    """A ws whose batch publishes are recorded (their sizes), optionally held at a gate."""

    def __init__(self, ctx: ServiceContext) -> None:
        super().__init__(ctx)
        self.sizes: list[int] = []
        self.gate: asyncio.Event | None = None
        self.sending = asyncio.Event()

    async def publish_batch(self, batch: list[object]) -> None:
        self.sizes.append(len(batch))
        self.sending.set()
        if self.gate is not None:
            await self.gate.wait()
        await super().publish_batch(batch)


def _ws(client: aioredis.Redis, keys: KeySpace) -> _CountedWs:
    settings = ServiceSettings.load(
        ServiceName.WS, environ={}, overrides={"key_prefix": keys.prefix, "use_pydantic_contracts": True}
    )
    return _CountedWs(ServiceContext.create(ServiceName.WS, settings, client))


async def _run_outbox(outbox: Outbox) -> tuple[asyncio.Event, asyncio.Task[None]]:
    stop = asyncio.Event()
    return stop, asyncio.create_task(outbox.run(stop))


async def test_outbox__one_trade_and_nothing_after__is_published_without_a_flush_or_another_trade(
    redis_async: aioredis.Redis, keys: KeySpace
) -> None:
    ws = _ws(redis_async, keys)
    outbox = Outbox(ws, capacity=1_000, overflow=Overflow.WAIT)
    stop, sender = await _run_outbox(outbox)
    try:
        await outbox.put(_trade(1))
        async with asyncio.timeout(LIVENESS_S):
            await outbox.drain()
        assert ws.sizes == [1]
        assert await redis_async.xlen(keys.stream(Topic.MARKET_DATA)) == 1
    finally:
        stop.set()
        await sender


async def test_outbox__trades_queued_while_a_send_is_in_flight__go_out_together_in_the_next_send(
    redis_async: aioredis.Redis, keys: KeySpace
) -> None:
    ws = _ws(redis_async, keys)
    outbox = Outbox(ws, capacity=1_000, overflow=Overflow.WAIT)
    ws.gate = asyncio.Event()
    stop, sender = await _run_outbox(outbox)
    try:
        await outbox.put(_trade(0))
        async with asyncio.timeout(LIVENESS_S):
            await ws.sending.wait()  # the first trade's send is in flight (held at the gate)
        for i in range(1, 201):
            await outbox.put(_trade(i))
        ws.gate.set()
        async with asyncio.timeout(LIVENESS_S):
            await outbox.drain()
        # 201 trades in 2 round trips: the busy feed's 200 went out as one batch.
        assert ws.sizes == [1, 200]
        assert await redis_async.xlen(keys.stream(Topic.MARKET_DATA)) == 201
    finally:
        stop.set()
        await sender


def _consumer(client: aioredis.Redis, keys: KeySpace, *, block_ms: int) -> tuple[StreamConsumer, list[Any]]:
    consumer = StreamConsumer(
        client,
        topic=Topic.MARKET_DATA,
        service=ServiceName.SIGNAL,
        codec=codec_for_mode(CodecMode.LENIENT),
        keys=keys,
        instance="adaptive-1",
        batch_size=500,
        block_ms=block_ms,
    )
    reads: list[Any] = []
    read_new = consumer.io.read_new

    async def counted(count: int, block: int | None, **options: Any) -> Any:
        got = await read_new(count, block, **options)
        reads.append(len(got))
        return got

    consumer.io.read_new = counted  # type: ignore[method-assign]
    return consumer, reads


async def _publish(client: aioredis.Redis, keys: KeySpace, n: int) -> None:
    settings = ServiceSettings.load(
        ServiceName.WS, environ={}, overrides={"key_prefix": keys.prefix, "use_pydantic_contracts": True}
    )
    ctx = ServiceContext.create(ServiceName.WS, settings, client)
    await ctx.publisher.publish_many(Topic.MARKET_DATA, make_messages(ctx.codec, Topic.MARKET_DATA, n))


async def test_consumer__one_waiting_entry__is_handled_by_one_read_without_waiting_for_a_full_batch(
    redis_async: aioredis.Redis, keys: KeySpace
) -> None:
    # A read that waited for its count (500) or for its block (10 min) would hang here.
    consumer, reads = _consumer(redis_async, keys, block_ms=600_000)
    await consumer.ensure_group()
    await _publish(redis_async, keys, 1)
    handled = Collector()
    async with asyncio.timeout(LIVENESS_S):
        assert await consumer.poll_once(handled) == 1
    assert reads == [1]
    assert len(handled.ids) == 1


async def test_consumer__a_burst_of_waiting_entries__is_handled_in_one_read_not_one_per_entry(
    redis_async: aioredis.Redis, keys: KeySpace
) -> None:
    consumer, reads = _consumer(redis_async, keys, block_ms=600_000)
    await consumer.ensure_group()
    await _publish(redis_async, keys, 300)
    handled = Collector()
    async with asyncio.timeout(LIVENESS_S):
        assert await consumer.poll_once(handled) == 300
    assert reads == [300]
    assert len(handled.ids) == 300
