"""Fenced group commands on the real Redis (issue 16): a consumer whose partition lease moved
takes, acknowledges and sends nothing, whatever it re-sends after a pause."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis

from core.codec import Decoded, build_codec
from core.errors import GroupRewoundError, LeaseLostError, StateAheadError, TransportError
from core.redis import Publisher, StreamConsumer, publish_message
from core.redis import fence as fence_module
from core.topics import CodecPath, KeySpace, ServiceName, Topic
from tests.samples import valid_message

pytestmark = pytest.mark.integration

CODEC = build_codec(CodecPath.PYDANTIC)
SERVICE = ServiceName.SIGNAL


def _trade(i: int) -> Any:
    return CODEC.build(
        Topic.MARKET_DATA,
        {
            "symbol": "BTC/USDT",
            "price": 100.0 + i,
            "volume": 1.0,
            "side": "BUY",
            "venue": "mexc",
            "timestamp": 1_767_225_600_000 + i,
        },
    )


def _consumer(client: aioredis.Redis, space: KeySpace, instance: str, **options: Any) -> StreamConsumer:
    return StreamConsumer(
        client,
        topic=Topic.MARKET_DATA,
        service=SERVICE,
        codec=CODEC,
        keys=space,
        instance=instance,
        block_ms=0,
        lease=space.lease(SERVICE, 0),
        **options,
    )


def _publish(redis_sync: redis.Redis, space: KeySpace, count: int) -> list[str]:
    return [publish_message(redis_sync, Topic.MARKET_DATA, _trade(i), keys=space) for i in range(count)]


async def _pending(client: aioredis.Redis, space: KeySpace) -> dict[str, int]:
    rows = await client.xpending_range(space.stream(Topic.MARKET_DATA), space.group(SERVICE), "-", "+", 100)
    out: dict[str, int] = {}
    for row in rows:
        name = row["consumer"].decode() if isinstance(row["consumer"], bytes) else row["consumer"]
        out[name] = out.get(name, 0) + 1
    return out


async def test_fenced_read__a_stale_owner_takes_nothing_and_the_owner_gets_everything(
    redis_async: aioredis.Redis, redis_sync: redis.Redis, keys: KeySpace
) -> None:
    space = KeySpace(keys.prefix)
    ids = _publish(redis_sync, space, 5)
    stale, owner = _consumer(redis_async, space, "a"), _consumer(redis_async, space, "b")
    await stale.ensure_group()
    await redis_async.set(space.lease(SERVICE, 0), "b")  # "a" was paused; "b" owns it now
    seen: list[str] = []

    async def handle(decoded: Decoded, entry_id: str) -> None:
        seen.append(entry_id)

    reads = [
        lambda: stale.poll_once(handle),
        lambda: stale.io.read_new(10, 0),
        lambda: stale.io.read_own_pending(10),
    ]
    for read in reads:
        with pytest.raises(LeaseLostError, match=r"a no longer holds the lease .* \(held by b\)"):
            await read()
    with pytest.raises(LeaseLostError):
        await stale.io.reclaim(0, 10)
    assert seen == []
    assert await _pending(redis_async, space) == {}
    assert await owner.poll_once(handle) == 5
    assert seen == [str(i) for i in ids]
    assert await _pending(redis_async, space) == {}  # all acked by the owner


async def test_fenced_ack__acknowledges_only_for_the_lease_holder_and_says_how_many_were_pending(
    redis_async: aioredis.Redis, redis_sync: redis.Redis, keys: KeySpace
) -> None:
    # The fenced XACK is packed by hand (not by redis-py): the same refusals and counts.
    space = KeySpace(keys.prefix)
    _publish(redis_sync, space, 3)
    consumer = _consumer(redis_async, space, "a")
    await consumer.ensure_group()
    await redis_async.set(space.lease(SERVICE, 0), "a")
    fence = consumer.fence
    assert fence is not None
    ids = [raw_id for raw_id, _ in await consumer.io.read_new(10, None)]
    assert len(ids) == 3
    await redis_async.set(space.lease(SERVICE, 0), "b")
    with pytest.raises(LeaseLostError, match=r"a no longer holds the lease .* \(held by b\)"):
        await fence.ack(ids)
    assert await _pending(redis_async, space) == {"a": 3}
    await redis_async.set(space.lease(SERVICE, 0), "a")
    assert await fence.ack([*ids[:2], b"1-1"]) == 2  # an id not pending is not counted
    assert await _pending(redis_async, space) == {"a": 1}
    stream = space.stream(Topic.MARKET_DATA)
    await redis_async.delete(stream)
    await redis_async.set(stream, "not a stream")  # the server's error reply is raised as such
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        await fence.ack(ids[2:])


async def test_fenced_ack__a_batch_whose_lease_moved_mid_batch_is_neither_sent_nor_acked(
    redis_async: aioredis.Redis, redis_sync: redis.Redis, keys: KeySpace
) -> None:
    space = KeySpace(keys.prefix)
    _publish(redis_sync, space, 3)
    flushed: list[int] = []

    async def before_ack() -> None:
        flushed.append(1)

    consumer = _consumer(redis_async, space, "a", before_ack=before_ack)
    await consumer.ensure_group()
    await redis_async.set(space.lease(SERVICE, 0), "a")

    async def handle(decoded: Decoded, entry_id: str) -> None:
        # The instance freezes mid-batch past the lease and "b" takes the partition.
        await redis_async.set(space.lease(SERVICE, 0), "b")

    with pytest.raises(LeaseLostError, match="outputs not sent"):
        await consumer.poll_once(handle)
    assert flushed == []
    assert await _pending(redis_async, space) == {"a": 3}  # not acked: the new owner claims them
    stop = asyncio.Event()
    with pytest.raises(LeaseLostError):  # run() ends instead of retrying
        await consumer.run(handle, stop)


async def test_unsettled_batch__a_stateful_consumer_asks_for_a_rebuild(
    redis_async: aioredis.Redis, redis_sync: redis.Redis, keys: KeySpace
) -> None:
    space = KeySpace(keys.prefix)
    _publish(redis_sync, space, 2)

    async def before_ack() -> None:
        raise TransportError("Redis refused the publish")

    async def handle(decoded: Decoded, entry_id: str) -> None:
        return None

    stateful = _consumer(redis_async, space, "a", before_ack=before_ack, detect_rewind=True)
    await stateful.ensure_group()
    await redis_async.set(space.lease(SERVICE, 0), "a")
    with pytest.raises(StateAheadError, match="batch of 2 handled but not settled"):
        await stateful.poll_once(handle)
    stateless = _consumer(redis_async, space, "a", before_ack=before_ack)
    with pytest.raises(TransportError) as caught:
        await stateless.poll_once(handle)
    assert not isinstance(caught.value, StateAheadError)


async def test_lost_outputs__a_stream_whose_tail_is_older_than_what_was_written_is_named(
    redis_async: aioredis.Redis, redis_sync: redis.Redis, keys: KeySpace
) -> None:
    space = KeySpace(keys.prefix)
    publisher = Publisher(redis_async, CODEC, keys=space, service=SERVICE)
    consumer = _consumer(redis_async, space, "a", outputs=publisher, detect_rewind=True)
    await consumer.ensure_group()
    signal = CODEC.build(Topic.SIGNALS, valid_message(Topic.SIGNALS))
    stream = space.stream(Topic.SIGNALS)
    await publisher.publish(Topic.SIGNALS, signal)
    await consumer.lag()  # nothing lost yet
    await redis_async.xtrim(stream, maxlen=0)  # trimmed from the head: not a loss
    await consumer.lag()
    ids = [await publisher.publish(Topic.SIGNALS, signal) for _ in range(2)]
    # The node goes back to a state before the newest write (an older snapshot).
    await redis_async.xdel(stream, ids[-1])
    await redis_async.execute_command("XSETID", stream, ids[0])
    with pytest.raises(
        GroupRewoundError, match=rf"signals_stream lost entries .* ends at {ids[0]}, {ids[1]} was"
    ):
        await consumer.lag()


async def test_fenced_read__a_read_whose_reply_was_lost_gives_its_entries_again_before_new_ones(
    redis_async: aioredis.Redis, redis_sync: redis.Redis, keys: KeySpace
) -> None:
    space = KeySpace(keys.prefix)
    ids = _publish(redis_sync, space, 6)
    consumer = _consumer(redis_async, space, "a")
    await consumer.ensure_group()
    await redis_async.set(space.lease(SERVICE, 0), "a")
    assert consumer.fence is not None
    # The server ran this read, but its reply never reached the consumer.
    assert len((await consumer.fence.read("a", 3, ">")).entries) == 3
    again = await consumer.io.read_new(3, None)
    assert ([e[0].decode() for e in again], consumer.io.recovered) == (ids[:3], True)
    after = await consumer.io.read_new(3, None)
    assert ([e[0].decode() for e in after], consumer.io.recovered) == (ids[3:], False)


@pytest.mark.parametrize("resent_by", ["transport-retry", "client-retry"])
async def test_fenced_read__a_re_sent_read_after_a_lost_reply__every_entry_once_in_order_no_rewind(
    redis_async: aioredis.Redis,
    redis_sync: redis.Redis,
    keys: KeySpace,
    monkeypatch: pytest.MonkeyPatch,
    resent_by: str,
) -> None:
    """What a cluster fail-over did in the manual-failover test (3 of 30 runs before): redis-py's
    cluster client closed a connection mid-command while refreshing its slot map, and re-sent
    the fenced read it had running there; the server had run the first one. Re-sent by the
    transport's retry (the error reaches it) or by the client itself (nobody sees it), a read
    after a lost reply must give that reply's entries, not the next ones: else the newer entries
    are handled and acknowledged first, the older ones come back later as "acknowledged entries
    delivered again", and the rebuilt state applies them after the newer ones (fills differed)."""
    space = KeySpace(keys.prefix)
    ids = _publish(redis_sync, space, 6)
    lost: list[Any] = []

    real_run = fence_module.FENCED_SCRIPT.run

    async def run_losing_one_read_reply(client: Any, numkeys: int, *args: Any) -> Any:
        reply = await real_run(client, numkeys, *args)
        # args: lease, stream, owner, operation, group, consumer, count, start, ...
        if not lost and args[3] == "read" and args[7] == ">" and reply[1]:
            lost.append(reply)
            if resent_by == "transport-retry":
                raise redis.ConnectionError("Connection closed by server.")
            return await real_run(client, numkeys, *args)
        return reply

    monkeypatch.setattr(fence_module.FENCED_SCRIPT, "run", run_losing_one_read_reply)
    consumer = _consumer(redis_async, space, "a", batch_size=3, reclaim_idle_ms=0, detect_rewind=True)
    await consumer.ensure_group()
    await redis_async.set(space.lease(SERVICE, 0), "a")
    seen: list[str] = []

    async def handle(decoded: Decoded, entry_id: str) -> None:
        seen.append(entry_id)

    for _ in range(4):  # each round also reclaims what sits idle (reclaim_idle_ms=0)
        await consumer.poll_once(handle)
        await asyncio.sleep(0.02)
    assert lost, "the injected lost reply never happened"
    assert seen == [str(i) for i in ids]
    assert await _pending(redis_async, space) == {}
