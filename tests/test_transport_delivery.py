"""At-least-once delivery: unacked entries come back, failing handlers end in the dead letters."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
import redis.asyncio as aioredis

from core.codec import Decoded
from core.errors import TransportError
from core.redis import DeadLetterCause, DeadLetters, Publisher, StreamConsumer
from core.topics import KeySpace, ServiceName, Topic
from tests.transport_helpers import CODECS, Collector, make_messages, orders_consumer, poll_until

pytestmark = pytest.mark.integration

CODEC = CODECS["pydantic-strict"]
TOPIC = Topic.ORDERS


consumer = orders_consumer


async def publish(redis: aioredis.Redis, keys: KeySpace, n: int) -> list[str]:
    publisher = Publisher(redis, CODEC, keys=keys, service=ServiceName.RISK)
    return await publisher.publish_many(TOPIC, make_messages(CODEC, TOPIC, n))


async def test_consumer_killed_before_ack__second_consumer_reclaims_and_processes_every_entry(
    any_redis: aioredis.Redis, keys: KeySpace
) -> None:
    first = consumer(any_redis, keys, "doomed", reclaim_idle_ms=100)
    await first.ensure_group()
    published = await publish(any_redis, keys, 1_000)
    seen_by_first: list[str] = []
    stuck = asyncio.Event()

    async def hangs_mid_batch(decoded: Decoded, entry_id: str) -> None:
        seen_by_first.append(entry_id)
        if len(seen_by_first) == 50:
            stuck.set()
            await asyncio.Event().wait()  # never returns: the consumer dies here

    task = asyncio.create_task(first.poll_once(hangs_mid_batch))
    await asyncio.wait_for(stuck.wait(), timeout=5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    second = consumer(any_redis, keys, "survivor", reclaim_idle_ms=100)
    processed = Collector()
    await poll_until(lambda: second.poll_once(processed), lambda: set(processed.ids) >= set(published))

    assert set(processed.ids) == set(published)
    assert len(processed.ids) == len(published)
    # What the dead consumer handled but never acked is handled again: the documented
    # at-least-once duplicates, limited to the one batch it had read.
    assert set(seen_by_first) <= set(processed.ids)
    assert len(seen_by_first) == 50
    assert (await second.lag()) == 0


async def test_consumer_restarted_with_the_same_name__handles_its_own_pending_entries_first(
    any_redis: aioredis.Redis, keys: KeySpace
) -> None:
    first = consumer(any_redis, keys, "instance-1")
    await first.ensure_group()
    published = await publish(any_redis, keys, 30)

    async def crashes(decoded: Decoded, entry_id: str) -> None:
        raise asyncio.CancelledError  # the process dies while handling the first entry

    with pytest.raises(asyncio.CancelledError):
        await first.poll_once(crashes)
    restarted = consumer(any_redis, keys, "instance-1")  # default reclaim idle: 30 s
    handled = Collector()

    await poll_until(lambda: restarted.poll_once(handled), lambda: len(handled.ids) >= 30, timeout_s=5)

    assert handled.ids == published


async def test_handler_failure__retried_on_reclaim_then_dead_lettered_after_max_deliveries(
    any_redis: aioredis.Redis, keys: KeySpace
) -> None:
    worker = consumer(any_redis, keys, "w", reclaim_idle_ms=30, max_deliveries=3)
    await worker.ensure_group()
    [poison, *rest] = await publish(any_redis, keys, 5)
    attempts: list[str] = []
    handled = Collector()

    async def fails_on_poison(decoded: Decoded, entry_id: str) -> None:
        if entry_id == poison:
            attempts.append(entry_id)
            raise RuntimeError("venue said no")
        await handled(decoded, entry_id)

    await poll_until(
        lambda: worker.poll_once(fails_on_poison), lambda: len(attempts) >= 3 and len(handled.ids) == 4
    )
    [letter] = await worker.dead_letters.read(TOPIC)

    assert handled.ids == rest
    assert attempts == [poison] * 3
    assert letter.stream_id == poison
    assert letter.cause == DeadLetterCause.HANDLER_FAILED
    assert letter.deliveries == 3
    assert letter.errors[0]["msg"] == "venue said no"
    assert letter.errors[0]["exception"] == "builtins.RuntimeError"
    assert CODEC.from_fields(TOPIC, _fields_of(letter.raw)).message is not None
    snap = worker.metrics.snapshot()
    assert (snap["messages_retry"], snap["messages_dead_lettered"], snap["dead_letters"]) == (2, 1, 1)
    assert (await worker.lag()) == 0


async def test_handler_failure__entry_stays_pending_and_is_acked_once_a_retry_succeeds(
    any_redis: aioredis.Redis, keys: KeySpace
) -> None:
    worker = consumer(any_redis, keys, "w", reclaim_idle_ms=30, max_deliveries=5)
    await worker.ensure_group()
    [only] = await publish(any_redis, keys, 1)
    calls: list[str] = []

    async def flaky(decoded: Decoded, entry_id: str) -> None:
        calls.append(entry_id)
        if len(calls) == 1:
            raise ConnectionResetError("downstream hiccup")

    await worker.poll_once(flaky)
    pending_after_failure = (await any_redis.xpending(keys.stream(TOPIC), keys.group(ServiceName.EXECUTION)))[
        "pending"
    ]
    await poll_until(lambda: worker.poll_once(flaky), lambda: len(calls) >= 2)

    assert pending_after_failure == 1
    assert calls == [only, only]
    assert (await worker.lag()) == 0
    assert await worker.dead_letters.count(TOPIC) == 0


async def test_consumer__entries_delivered_more_than_max_deliveries__dead_lettered_without_handling(
    any_redis: aioredis.Redis, keys: KeySpace
) -> None:
    await consumer(any_redis, keys, "any").ensure_group()
    [entry] = await publish(any_redis, keys, 1)
    stream, group = keys.stream(TOPIC), keys.group(ServiceName.EXECUTION)
    # Two consumers died while holding the entry (a message that crashes the process).
    await any_redis.xreadgroup(group, "d1", {stream: ">"}, count=1)
    await any_redis.xclaim(stream, group, "d2", 0, [entry])
    survivor = consumer(any_redis, keys, "s", reclaim_idle_ms=1, max_deliveries=2)
    handled = Collector()
    await asyncio.sleep(0.01)

    await poll_until(
        lambda: survivor.poll_once(handled), lambda: survivor.metrics.snapshot()["dead_letters"] == 1
    )

    [letter] = await survivor.dead_letters.read(TOPIC)
    assert handled.ids == []
    assert letter.reason == "max_deliveries"
    assert letter.deliveries == 3


async def test_ensure_group__is_idempotent_and_creates_the_stream(
    any_redis: aioredis.Redis, keys: KeySpace
) -> None:
    worker = consumer(any_redis, keys, "w")

    await worker.ensure_group()
    await worker.ensure_group()

    groups = await any_redis.xinfo_groups(keys.stream(TOPIC))
    assert [g["name"].decode() for g in groups] == [keys.group(ServiceName.EXECUTION)]


async def test_lag__counts_undelivered_and_pending_entries(any_redis: aioredis.Redis, keys: KeySpace) -> None:
    worker = consumer(any_redis, keys, "w", batch_size=10, reclaim_idle_ms=60_000)
    await worker.ensure_group()
    await publish(any_redis, keys, 25)

    async def fails(decoded: Decoded, entry_id: str) -> None:
        raise ValueError("not yet")

    before = await worker.lag()
    await worker.poll_once(fails)  # 10 delivered, all left pending
    after = await worker.lag()

    assert (before, after) == (25, 25)
    assert worker.metrics.snapshot()["pending"] == 10
    assert worker.metrics.snapshot()["lag"] == 15


async def test_group_deleted_while_running__recreated_and_consumption_resumes(
    any_redis: aioredis.Redis, keys: KeySpace
) -> None:
    worker = consumer(any_redis, keys, "w")
    await worker.ensure_group()
    await worker.poll_once(Collector())
    await any_redis.xgroup_destroy(keys.stream(TOPIC), keys.group(ServiceName.EXECUTION))
    published = await publish(any_redis, keys, 20)
    handled = Collector()

    await poll_until(lambda: worker.poll_once(handled), lambda: len(handled.ids) >= 20, timeout_s=5)

    assert handled.ids == published


async def test_run__returns_when_stop_is_set(any_redis: aioredis.Redis, keys: KeySpace) -> None:
    worker = consumer(any_redis, keys, "w")
    await worker.ensure_group()
    published = await publish(any_redis, keys, 10)
    handled = Collector()
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(handled, stop))

    await poll_until(lambda: asyncio.sleep(0.01), lambda: len(handled.ids) >= 10, timeout_s=5)
    stop.set()
    await asyncio.wait_for(task, timeout=2)

    assert handled.ids == published


def _fields_of(raw: bytes) -> dict[str, str]:
    return dict(json.loads(raw))


async def test_lenient_consumer__fields_filled_from_defaults_are_counted_per_field(
    redis_async: aioredis.Redis, keys: KeySpace
) -> None:
    legacy, lenient = CODECS["legacy"], CODECS["pydantic-lenient"]
    old_producer = Publisher(redis_async, legacy, keys=keys, service=ServiceName.SIGNAL)
    worker = StreamConsumer(
        redis_async, topic=Topic.SIGNALS, service=ServiceName.RISK, codec=lenient, keys=keys, instance="r"
    )
    await worker.ensure_group()
    await old_producer.publish_many(Topic.SIGNALS, make_messages(legacy, Topic.SIGNALS, 7))
    handled = Collector()

    await poll_until(lambda: worker.poll_once(handled), lambda: len(handled.ids) >= 7)

    snap = worker.metrics.snapshot()
    assert snap["defaults_by_field"] == {"api_version": 7, "timestamp": 7}
    assert snap["messages_ok"] == 7


async def test_before_ack__outputs_deferred_by_the_handler_are_published_once_per_batch_before_the_ack(
    any_redis: aioredis.Redis, keys: KeySpace
) -> None:
    results = Publisher(any_redis, CODEC, keys=keys, service=ServiceName.EXECUTION)
    flushes: list[int] = []

    async def flush_and_check_inputs_still_pending() -> None:
        pending = await any_redis.xpending(keys.stream(TOPIC), keys.group(ServiceName.EXECUTION))
        flushes.append(pending["pending"])
        await results.flush()

    worker = consumer(any_redis, keys, "w", batch_size=50, before_ack=flush_and_check_inputs_still_pending)
    await worker.ensure_group()
    await publish(any_redis, keys, 120)

    async def fill(decoded: Decoded, entry_id: str) -> None:
        order = decoded.message
        results.defer(Topic.ORDER_RESULTS, CODEC.build(Topic.ORDER_RESULTS, _filled(order)))

    await poll_until(lambda: worker.poll_once(fill), lambda: worker.metrics.snapshot()["messages_ok"] >= 120)

    assert flushes == [50, 50, 20]  # one flush per batch, while the batch was still unacked
    assert await any_redis.xlen(keys.stream(Topic.ORDER_RESULTS)) == 120
    assert results.deferred == 0
    assert await worker.lag() == 0


async def test_before_ack__raises__nothing_of_the_batch_is_acked(
    any_redis: aioredis.Redis, keys: KeySpace
) -> None:
    async def redis_down() -> None:
        raise TransportError("publish order_results: Redis unreachable after 10 attempt(s)")

    worker = consumer(any_redis, keys, "w", before_ack=redis_down)
    await worker.ensure_group()
    await publish(any_redis, keys, 10)

    with pytest.raises(TransportError):
        await worker.poll_once(Collector())

    pending = await any_redis.xpending(keys.stream(TOPIC), keys.group(ServiceName.EXECUTION))
    assert pending["pending"] == 10


@pytest.mark.parametrize("fenced", [False, True], ids=["plain", "fenced"])
async def test_a_batch_that_cannot_be_settled__comes_back_without_using_up_its_deliveries(
    redis_async: aioredis.Redis, keys: KeySpace, fenced: bool
) -> None:
    # The store (or Redis) down for a while: every retry re-reads the batch, which Redis counts
    # as a delivery. Those must not count toward max_deliveries: an outage of a few seconds
    # used to park good orders as "delivered N times without an acknowledgement".
    outage = 4
    calls: list[int] = []

    async def store_down_for_a_while() -> None:
        calls.append(1)
        if len(calls) <= outage:
            raise TransportError("execution could not store 10 results: OperationalError: server closed")

    options: dict[str, Any] = {"max_deliveries": 2, "before_ack": store_down_for_a_while}
    if fenced:
        options["lease"] = keys.lease(ServiceName.EXECUTION, 0)
        await redis_async.set(options["lease"], "w")
    worker = consumer(redis_async, keys, "w", **options)
    await worker.ensure_group()
    published = await publish(redis_async, keys, 10)
    seen = Collector()
    stop = asyncio.Event()
    running = asyncio.create_task(worker.run(seen, stop))
    await poll_until(lambda: asyncio.sleep(0.05), lambda: len(calls) > outage, timeout_s=20)
    await poll_until(lambda: asyncio.sleep(0.05), lambda: worker._owed == [], timeout_s=5)
    stop.set()
    await running

    assert len(calls) == outage + 1
    assert seen.ids == published * (outage + 1)  # handled again after each failed settle
    assert await DeadLetters(redis_async, keys).read(TOPIC, count=10) == []
    pending = await redis_async.xpending(keys.stream(TOPIC), keys.group(ServiceName.EXECUTION))
    assert pending["pending"] == 0


def _filled(order: Any) -> dict[str, Any]:
    return {
        "order_id": order.order_id,
        "symbol": order.symbol,
        "side": order.side,
        "status": "FILLED",
        "filled_quantity": order.quantity,
        "average_price": order.price or 50_000.0,
        "fee": 0.0,
        "reason": None,
        "simulated": True,
    }


def test_consumer__client_that_decodes_responses__refused_at_construction(redis_url: str) -> None:
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)

    with pytest.raises(ValueError, match="decode_responses=False"):
        consumer(client, KeySpace("x:"), "w")


@pytest.mark.strict_path
async def test_consumer__published_messages_consumed_in_order_and_a_bad_entry_dead_lettered(
    any_redis: aioredis.Redis, keys: KeySpace
) -> None:
    worker = consumer(any_redis, keys, "w", batch_size=500, block_ms=10)
    await worker.ensure_group()
    messages = make_messages(CODEC, TOPIC, 2_000)
    publisher = Publisher(any_redis, CODEC, keys=keys, service=ServiceName.RISK, chunk=300)
    ids = await publisher.publish_many(TOPIC, messages[:1_000])
    await any_redis.xadd(keys.stream(TOPIC), {"order_id": "not json"})
    ids += await publisher.publish_many(TOPIC, messages[1_000:])
    handled = Collector()

    await poll_until(lambda: worker.poll_once(handled), lambda: len(handled.ids) >= 2_000)

    [letter] = await worker.dead_letters.read(TOPIC)
    assert handled.messages == messages
    assert handled.ids == ids
    assert letter.cause == DeadLetterCause.INVALID
    assert await worker.lag() == 0
