"""A busy consumer's round trips: each batch's XACK travels with the next read, and an ack
owed is never left behind (stop, failed before_ack, idle wait)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError

from core.codec import Decoded
from core.errors import ContractError, LeaseLostError, StateAheadError, TransportError
from core.redis import Publisher, StreamConsumer, consumer_io
from core.redis.retry import RetryPolicy
from core.topics import KeySpace, ServiceName, Topic
from tests.transport_helpers import CODECS, Collector, make_messages, orders_consumer

pytestmark = pytest.mark.integration

CODEC = CODECS["pydantic-strict"]
TOPIC = Topic.ORDERS
BATCH = 100


def consumer(redis: aioredis.Redis, keys: KeySpace, **options: Any) -> StreamConsumer:
    return orders_consumer(redis, keys, batch_size=BATCH, **options)


async def publish(redis: aioredis.Redis, keys: KeySpace, n: int) -> list[str]:
    publisher = Publisher(redis, CODEC, keys=keys, service=ServiceName.RISK)
    return await publisher.publish_many(TOPIC, make_messages(CODEC, TOPIC, n))


async def pending_ids(redis: aioredis.Redis, keys: KeySpace) -> list[str]:
    rows = await redis.xpending_range(keys.stream(TOPIC), keys.group(ServiceName.EXECUTION), "-", "+", 10_000)
    return [row["message_id"].decode() for row in rows]


async def test_busy_consumer__one_round_trip_per_batch_the_ack_riding_with_the_next_read(
    redis_async: aioredis.Redis, keys: KeySpace, writes: list[int]
) -> None:
    c = consumer(redis_async, keys)
    await c.ensure_group()
    await publish(redis_async, keys, 6 * BATCH)
    seen = Collector()
    assert await c.poll_once(seen, carry_ack=True) == BATCH  # own pending, reclaim, first batch
    for n in range(2, 6):
        writes[0] = 0
        assert await c.poll_once(seen, carry_ack=True) == BATCH
        assert writes[0] == 1  # one round trip a batch (the bare loop: XREADGROUP, then XACK)
        # The previous batches are acknowledged: only the one just handled is still pending.
        assert await pending_ids(redis_async, keys) == seen.ids[(n - 1) * BATCH :]


async def test_owed_ack__is_sent_before_the_consumer_waits_for_new_entries(
    redis_async: aioredis.Redis, keys: KeySpace
) -> None:
    c = consumer(redis_async, keys)
    await c.ensure_group()
    await publish(redis_async, keys, BATCH)
    seen = Collector()
    assert await c.poll_once(seen, carry_ack=True) == BATCH
    assert len(await pending_ids(redis_async, keys)) == BATCH  # owed: it goes with the next read
    assert await c.poll_once(seen, carry_ack=True) == 0  # nothing new: a blocking wait
    assert await pending_ids(redis_async, keys) == []


async def test_poll_once_without_carry_ack__acknowledges_its_batch_before_returning(
    redis_async: aioredis.Redis, keys: KeySpace
) -> None:
    c = consumer(redis_async, keys)
    await c.ensure_group()
    await publish(redis_async, keys, 2 * BATCH)
    assert await c.poll_once(Collector()) == BATCH
    assert await pending_ids(redis_async, keys) == []


async def test_run_stopped_mid_stream__leaves_nothing_it_handled_pending(
    redis_async: aioredis.Redis, keys: KeySpace
) -> None:
    c = consumer(redis_async, keys)
    await c.ensure_group()
    published = await publish(redis_async, keys, 5 * BATCH)
    stop = asyncio.Event()
    seen: list[str] = []

    async def handle(decoded: Decoded, entry_id: str) -> None:
        seen.append(entry_id)
        if len(seen) == 2 * BATCH + 50:
            stop.set()  # mid-batch: the batch is finished, then run ends

    await asyncio.wait_for(c.run(handle, stop), timeout=20)
    assert seen == published[: 3 * BATCH]
    assert await pending_ids(redis_async, keys) == []  # the last batch's ack was not left owed
    undelivered, pending = await c.io.backlog()
    assert (undelivered, pending) == (2 * BATCH, 0)


async def test_failing_before_ack__leaves_its_batch_unacknowledged_and_the_earlier_one_acked(
    redis_async: aioredis.Redis, keys: KeySpace
) -> None:
    fail = False

    async def before_ack() -> None:
        if fail:
            raise TransportError("outputs could not be confirmed")

    c = consumer(redis_async, keys, before_ack=before_ack)
    await c.ensure_group()
    published = await publish(redis_async, keys, 3 * BATCH)
    assert await c.poll_once(Collector(), carry_ack=True) == BATCH  # first batch: its ack owed
    fail = True
    with pytest.raises(TransportError):
        await c.poll_once(Collector(), carry_ack=True)
    # The read that took the second batch carried the first one's ack; the second batch's
    # outputs were not confirmed, so it is not acknowledged, now or by a later flush.
    assert await pending_ids(redis_async, keys) == published[BATCH : 2 * BATCH]
    await c.flush_acks()
    assert await pending_ids(redis_async, keys) == published[BATCH : 2 * BATCH]


async def test_run_on_a_full_stream__fewer_round_trips_than_a_read_and_an_ack_per_batch(
    redis_async: aioredis.Redis, keys: KeySpace, writes: list[int]
) -> None:
    batches = 20
    c = consumer(redis_async, keys)
    await c.ensure_group()
    published = await publish(redis_async, keys, batches * BATCH)
    stop = asyncio.Event()
    seen = Collector()

    async def handle(decoded: Decoded, entry_id: str) -> None:
        await seen(decoded, entry_id)
        if len(seen.ids) == len(published):
            stop.set()

    writes[0] = 0
    await asyncio.wait_for(c.run(handle, stop), timeout=20)
    assert seen.ids == published
    assert await pending_ids(redis_async, keys) == []
    # Start-up (own pending, reclaim), a backlog report (its ack sent alone) and the final
    # ack add a few; a read and an ack per batch would be 2 * batches at least.
    assert writes[0] < 2 * batches


async def test_read_carrying_the_ack_losing_its_connection__retried_and_counted_as_ack_and_read(
    redis_async: aioredis.Redis, keys: KeySpace, monkeypatch: pytest.MonkeyPatch
) -> None:
    c = consumer(redis_async, keys, retry=RetryPolicy(attempts=3, initial_s=0.0, jitter_s=0.0))
    await c.ensure_group()
    published = await publish(redis_async, keys, 2 * BATCH)
    assert await c.poll_once(Collector(), carry_ack=True) == BATCH
    real, failed = consumer_io.send_pipelined, []

    async def drops_the_first(client: Any, chunks: Any, on_replies: Any, **kw: Any) -> None:
        chunks = list(chunks)
        if not failed and chunks[0][1] == 2:  # XACK + XREADGROUP: lost before anything was sent
            failed.append(True)
            raise RedisConnectionError("connection reset")
        await real(client, chunks, on_replies, **kw)

    monkeypatch.setattr(consumer_io, "send_pipelined", drops_the_first)
    assert await c.poll_once(Collector(), carry_ack=True) == BATCH
    retries = c.metrics.transport_retries
    service = c.metrics.service
    assert [retries.labels(service, op)._value.get() for op in ("ack", "read")] == [1, 1]
    assert await pending_ids(redis_async, keys) == published[BATCH:]  # the first batch acked


# Fenced consumers (a partition lease): the owed ack rides inside the next read's
# lease-checking script, so it is refused, like the read, once the lease has moved.


async def fenced(redis: aioredis.Redis, keys: KeySpace, **options: Any) -> StreamConsumer:
    lease = keys.lease(ServiceName.EXECUTION, 0)
    await redis.set(lease, "c1")
    c = consumer(redis, keys, lease=lease, **options)
    await c.ensure_group()
    return c


class Forwarding(Collector):
    """A handler that defers one output per entry (its input, forwarded as a result)."""

    def __init__(self, outputs: Publisher) -> None:
        super().__init__()
        self.outputs = outputs

    async def __call__(self, decoded: Decoded, entry_id: str) -> None:
        await super().__call__(decoded, entry_id)
        self.outputs.defer(Topic.ORDER_RESULTS, make_messages(CODEC, Topic.ORDER_RESULTS, 1)[0])


@pytest.mark.parametrize(
    ("forwards", "round_trips"),
    [
        # The fenced read carrying the last batch's ack, the outputs in the script that checks
        # the lease first (a read, a lease check, the outputs and an ack would be four).
        pytest.param(True, 2, id="outputs: sent under the lease"),
        # Nothing but the ack, which the next read's script fences: no check of its own.
        pytest.param(False, 1, id="nothing to send: the read alone"),
    ],
)
async def test_busy_fenced_consumer__the_ack_rides_in_the_next_fenced_read(
    redis_async: aioredis.Redis, keys: KeySpace, writes: list[int], forwards: bool, round_trips: int
) -> None:
    outputs = Publisher(redis_async, CODEC, keys=keys, service=ServiceName.EXECUTION)
    c = await fenced(redis_async, keys, outputs=outputs)
    await publish(redis_async, keys, 5 * BATCH)
    seen = Forwarding(outputs) if forwards else Collector()
    assert await c.poll_once(seen, carry_ack=True) == BATCH
    for n in range(2, 5):
        writes[0] = 0
        assert await c.poll_once(seen, carry_ack=True) == BATCH
        assert writes[0] == round_trips
        assert await pending_ids(redis_async, keys) == seen.ids[(n - 1) * BATCH :]
    assert await redis_async.xlen(keys.stream(Topic.ORDER_RESULTS)) == (4 * BATCH if forwards else 0)


@pytest.mark.parametrize("forwards", [True, False], ids=["outputs", "nothing to send"])
async def test_stale_fenced_owner__its_batch_changes_nothing_in_redis_whether_or_not_it_sends(
    redis_async: aioredis.Redis, keys: KeySpace, forwards: bool
) -> None:
    # The lease moves while the batch is handled (a pause past the lease): the outputs are held
    # back by the check before them; a batch without outputs skips that check, and its ack is
    # refused with the next read instead. Either way nothing of the stale batch reaches Redis.
    outputs = Publisher(redis_async, CODEC, keys=keys, service=ServiceName.EXECUTION)
    c = await fenced(redis_async, keys, outputs=outputs)
    published = await publish(redis_async, keys, 2 * BATCH)
    lease = keys.lease(ServiceName.EXECUTION, 0)

    handled = Forwarding(outputs) if forwards else Collector()

    async def paused_past_the_lease(decoded: Decoded, entry_id: str) -> None:
        await handled(decoded, entry_id)
        await redis_async.set(lease, "c2")

    if forwards:
        with pytest.raises(LeaseLostError):
            await c.poll_once(
                paused_past_the_lease, carry_ack=True
            )  # refused at the check before the outputs
    else:
        assert await c.poll_once(paused_past_the_lease, carry_ack=True) == BATCH  # nothing to send: no check
        with pytest.raises(LeaseLostError):
            await c.poll_once(Collector(), carry_ack=True)  # the read carrying its ack is refused
    assert handled.ids == published[:BATCH]
    assert await redis_async.xlen(keys.stream(Topic.ORDER_RESULTS)) == 0
    assert await pending_ids(redis_async, keys) == published[:BATCH]  # nothing acknowledged


def _unbuildable() -> ContractError:
    return ContractError(topic="order_results", path="pydantic", profile="lenient", raw=b"{}", errors=[])


@pytest.mark.parametrize("made_by", ["handler", "batch step"])
async def test_stale_fenced_owner__parks_no_dead_letter_whichever_step_made_it(
    redis_async: aioredis.Redis, keys: KeySpace, made_by: str
) -> None:
    # Dead letters are not written under the lease: the lease is read before they are parked,
    # also when the batch step (which reads no lease of its own here) made them.
    lease = keys.lease(ServiceName.EXECUTION, 0)

    async def step(work: Any, guard: Any) -> dict[str, BaseException]:
        await redis_async.set(lease, "c2")  # paused past the lease during the batch step
        return {entry_id: _unbuildable() for entry_id in work}

    async def handle(decoded: Decoded, entry_id: str) -> object:
        if made_by == "batch step":
            return entry_id  # its work, for the batch step
        await redis_async.set(lease, "c2")
        raise _unbuildable()

    c = await fenced(redis_async, keys, finish_batch=step if made_by == "batch step" else None)
    published = await publish(redis_async, keys, BATCH)

    with pytest.raises(LeaseLostError, match="held by c2"):
        await c.poll_once(handle, carry_ack=True)

    assert await redis_async.xlen(keys.dlq(Topic.ORDERS)) == 0
    assert await pending_ids(redis_async, keys) == published  # nothing acknowledged


async def test_fenced_owed_ack__refused_with_the_read_once_the_lease_moved(
    redis_async: aioredis.Redis, keys: KeySpace
) -> None:
    c = await fenced(redis_async, keys)
    published = await publish(redis_async, keys, 2 * BATCH)
    assert await c.poll_once(Collector(), carry_ack=True) == BATCH
    await redis_async.set(keys.lease(ServiceName.EXECUTION, 0), "c2")  # paused past the lease
    seen = Collector()
    with pytest.raises(LeaseLostError):
        await c.poll_once(seen, carry_ack=True)
    assert seen.ids == []  # nothing new taken...
    assert await pending_ids(redis_async, keys) == published[:BATCH]  # ...and nothing acked


async def test_fenced_owed_ack_lost__a_stateful_consumer_asks_for_a_rebuild_a_stateless_one_retries(
    redis_async: aioredis.Redis, keys: KeySpace, monkeypatch: pytest.MonkeyPatch
) -> None:
    await publish(redis_async, keys, 2 * BATCH)
    for stateful in (True, False):
        c = await fenced(
            redis_async,
            keys,
            instance="c1",
            detect_rewind=stateful,
            retry=RetryPolicy(attempts=2, initial_s=0.0, jitter_s=0.0),
        )
        assert await c.poll_once(Collector(), carry_ack=True) in (BATCH, 2 * BATCH)
        assert c.fence is not None

        async def unreachable(*args: Any, **kwargs: Any) -> Any:
            raise RedisConnectionError("connection reset")

        with monkeypatch.context() as m:
            m.setattr(c.fence, "read", unreachable)
            with pytest.raises(TransportError) as caught:
                await c.poll_once(Collector(), carry_ack=True)
        # Handled but perhaps not acknowledged: a stateful consumer's state is ahead of Redis.
        assert isinstance(caught.value, StateAheadError) is stateful


async def test_idle_fenced_consumer__the_ack_rides_the_first_read_then_it_waits_and_reads_in_one(
    redis_async: aioredis.Redis, keys: KeySpace, monkeypatch: pytest.MonkeyPatch, writes: list[int]
) -> None:
    c = await fenced(redis_async, keys, block_ms=50)
    await publish(redis_async, keys, BATCH)
    assert c.fence is not None
    calls: list[str] = []
    read, wait_and_read = c.fence.read, c.fence.wait_and_read

    async def counted_read(*args: Any, **kwargs: Any) -> Any:
        calls.append("ack+read" if kwargs.get("ack") else "read")
        return await read(*args, **kwargs)

    async def counted_wait_and_read(*args: Any, **kwargs: Any) -> Any:
        calls.append("wait+read")
        return await wait_and_read(*args, **kwargs)

    monkeypatch.setattr(c.fence, "read", counted_read)
    monkeypatch.setattr(c.fence, "wait_and_read", counted_wait_and_read)
    assert await c.poll_once(Collector(), carry_ack=True) == BATCH
    calls.clear()
    writes[0] = 0
    assert await c.poll_once(Collector(), carry_ack=True) == 0
    # The read carrying the ack found the stream drained; the blocking read waits from where
    # that read ended and reads what the wait announced: one round trip, the server running the
    # read as soon as the wait ends (here: it timed out). No second read before the wait.
    assert calls == ["ack+read", "wait+read"]
    assert writes[0] == 2
    assert await pending_ids(redis_async, keys) == []


async def test_idle_fenced_consumer__an_entry_between_its_empty_read_and_its_wait_ends_the_wait_at_once(
    redis_async: aioredis.Redis, keys: KeySpace, monkeypatch: pytest.MonkeyPatch
) -> None:
    c = await fenced(redis_async, keys, block_ms=5_000)
    await publish(redis_async, keys, BATCH)
    assert c.fence is not None
    seen = Collector()
    assert await c.poll_once(seen, carry_ack=True) == BATCH
    calls: list[str] = []
    read, wait_and_read = c.fence.read, c.fence.wait_and_read

    async def read_then_an_entry_comes(*args: Any, **kwargs: Any) -> Any:
        reply = await read(*args, **kwargs)
        calls.append(f"read {len(reply.entries)}")
        await publish(redis_async, keys, 1)  # after the read found nothing, before the wait
        return reply

    async def counted_wait_and_read(*args: Any, **kwargs: Any) -> Any:
        reply = await wait_and_read(*args, **kwargs)
        calls.append(f"wait+read {len(reply.entries)}")
        return reply

    monkeypatch.setattr(c.fence, "read", read_then_an_entry_comes)
    monkeypatch.setattr(c.fence, "wait_and_read", counted_wait_and_read)
    started = time.monotonic()
    assert await c.poll_once(seen, carry_ack=True) == 1
    assert time.monotonic() - started < 2.5  # not the 5-s wait: the entry is after where it waits
    assert calls == ["read 0", "wait+read 1"]
    assert len(seen.ids) == BATCH + 1


async def test_idle_fenced_consumer__an_entry_arriving_during_the_wait_is_taken_in_the_waits_round_trip(
    redis_async: aioredis.Redis, keys: KeySpace, monkeypatch: pytest.MonkeyPatch
) -> None:
    c = await fenced(redis_async, keys, block_ms=2_000)
    assert c.fence is not None
    seen = Collector()
    assert await c.poll_once(seen, carry_ack=True) == 0  # nothing yet: it reads, waits, reads
    calls: list[str] = []
    read, wait_and_read = c.fence.read, c.fence.wait_and_read

    async def counted_read(*args: Any, **kwargs: Any) -> Any:
        calls.append("read")
        return await read(*args, **kwargs)

    async def counted_wait_and_read(*args: Any, **kwargs: Any) -> Any:
        calls.append("wait+read")
        reply = await wait_and_read(*args, **kwargs)
        calls.append(f"took {len(reply.entries)}")
        return reply

    monkeypatch.setattr(c.fence, "read", counted_read)
    monkeypatch.setattr(c.fence, "wait_and_read", counted_wait_and_read)
    waiting = asyncio.ensure_future(c.poll_once(seen, carry_ack=True))
    await asyncio.sleep(0.2)  # the consumer is inside its wait now (its connection blocked)
    await publish(redis_async, keys, 3)  # on another connection of the pool
    assert await asyncio.wait_for(waiting, 1.5) == 3  # woken by the entries, long before the wait's end
    # No read of its own before the wait (it waits from where its last, empty, wait ended) nor
    # after it: an idle consumer makes one round trip per wake.
    assert calls == ["wait+read", "took 3"]
    # Taken through the group (pending for this consumer until the ack owed is sent), once each.
    assert await pending_ids(redis_async, keys) == seen.ids
    await c.flush_acks()
    assert await pending_ids(redis_async, keys) == []


async def test_fenced_wait__a_stale_owner_is_refused_when_the_wait_ends(
    redis_async: aioredis.Redis, keys: KeySpace
) -> None:
    c = await fenced(redis_async, keys, block_ms=50)
    assert await c.poll_once(Collector(), carry_ack=True) == 0
    await publish(redis_async, keys, 3)
    await redis_async.set(keys.lease(ServiceName.EXECUTION, 0), "c2")  # another owner now
    assert c.fence is not None
    with pytest.raises(LeaseLostError):
        await c.fence.wait_and_read("c1", BATCH, b"0-0", 50, taken=None)
    assert await pending_ids(redis_async, keys) == []  # nothing taken from under the new owner


# A consumer that caught up (its last read was not a full batch) settles that batch and waits
# for the next in one round trip: the owed ack, the wait and the read go together.


@pytest.mark.parametrize("fenced_by_lease", [True, False], ids=["fenced", "plain"])
async def test_caught_up_consumer__settles_its_batch_and_waits_for_the_next_in_one_round_trip(
    redis_async: aioredis.Redis, keys: KeySpace, writes: list[int], fenced_by_lease: bool
) -> None:
    if fenced_by_lease:
        c = await fenced(redis_async, keys, block_ms=300)
    else:
        c = consumer(redis_async, keys, block_ms=300)
        await c.ensure_group()
    await publish(redis_async, keys, 3)
    assert await c.poll_once(Collector(), carry_ack=True) == 3  # fewer than a batch: caught up
    assert len(await pending_ids(redis_async, keys)) == 3  # owed
    writes[0] = 0
    started = time.monotonic()
    assert await c.poll_once(Collector(), carry_ack=True) == 0  # nothing came: the wait ran out
    assert time.monotonic() - started >= 0.25  # it did wait
    assert writes[0] == 1  # the ack, the wait and the read: one round trip
    assert await pending_ids(redis_async, keys) == []  # acknowledged before it waited


async def test_caught_up_fenced_consumer__an_entry_that_came_while_it_handled_is_taken_at_once(
    redis_async: aioredis.Redis, keys: KeySpace, writes: list[int]
) -> None:
    c = await fenced(redis_async, keys, block_ms=3_000)
    first = await publish(redis_async, keys, 3)
    seen = Collector()

    async def handle(decoded: Decoded, entry_id: str) -> None:
        await seen(decoded, entry_id)
        if len(seen.ids) == 3:
            await publish(redis_async, keys, 1)  # arrives while the batch is handled

    assert await c.poll_once(handle, carry_ack=True) == 3
    writes[0] = 0
    started = time.monotonic()
    assert await c.poll_once(seen, carry_ack=True) == 1
    assert time.monotonic() - started < 1.5  # not the 3-s wait: the entry was there already
    assert writes[0] == 1
    assert await pending_ids(redis_async, keys) == seen.ids[3:]  # the first batch acknowledged
    assert seen.ids[:3] == first


async def test_caught_up_fenced_consumer__a_stale_owner_acknowledges_and_takes_nothing(
    redis_async: aioredis.Redis, keys: KeySpace
) -> None:
    c = await fenced(redis_async, keys, block_ms=100)
    published = await publish(redis_async, keys, 3)
    assert await c.poll_once(Collector(), carry_ack=True) == 3
    await redis_async.set(keys.lease(ServiceName.EXECUTION, 0), "c2")  # paused past the lease
    more = await publish(redis_async, keys, 2)
    seen = Collector()
    with pytest.raises(LeaseLostError, match="held by c2"):
        await c.poll_once(seen, carry_ack=True)
    assert seen.ids == []
    assert await pending_ids(redis_async, keys) == published  # the ack refused, nothing new taken
    info = await redis_async.xinfo_groups(keys.stream(TOPIC))
    assert info[0]["last-delivered-id"].decode() == published[-1]  # the new owner finds `more`
    assert len(more) == 2


async def test_caught_up_fenced_consumer__a_wait_ended_by_an_entry_it_cannot_take_does_not_spin(
    redis_async: aioredis.Redis, keys: KeySpace, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An entry delivered to another consumer of the group (here: one read past the fence) ends
    # a wait from the newest entry this consumer took, with nothing to take. The next wait
    # starts from the stream's end, so the consumer really waits instead of spinning.
    c = await fenced(redis_async, keys, block_ms=300)
    await publish(redis_async, keys, 3)
    assert await c.poll_once(Collector(), carry_ack=True) == 3
    await publish(redis_async, keys, 1)
    stream, group = keys.stream(TOPIC), keys.group(ServiceName.EXECUTION)
    assert await redis_async.xreadgroup(group, "someone-else", {stream: ">"}, count=10)
    assert c.fence is not None
    waits: list[float] = []
    wait_and_read = c.fence.wait_and_read

    async def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.monotonic()
        try:
            return await wait_and_read(*args, **kwargs)
        finally:
            waits.append(time.monotonic() - started)

    monkeypatch.setattr(c.fence, "wait_and_read", timed)
    assert await c.poll_once(Collector(), carry_ack=True) == 0
    assert await c.poll_once(Collector(), carry_ack=True) == 0
    assert len(waits) == 2
    assert waits[0] < 0.2  # ended at once by the entry someone else took
    assert waits[1] >= 0.25  # then a real wait, from the stream's end


async def test_caught_up_consumer__its_hop_latency_ends_at_the_ack_not_after_the_wait(
    redis_async: aioredis.Redis, keys: KeySpace
) -> None:
    c = await fenced(redis_async, keys, block_ms=600)
    await publish(redis_async, keys, 3)
    assert await c.poll_once(Collector(), carry_ack=True) == 3
    assert await c.poll_once(Collector(), carry_ack=True) == 0  # acked, then waited 600 ms
    series = c.metrics.consume_latency._series[TOPIC.value]
    assert sum(series.counts) == 3
    assert series.sum_ms / 3 < 400  # counted when the ack was sent, not when the wait ended


async def test_caught_up_fenced_consumer__stopped_in_its_wait__leaves_nothing_it_handled_pending(
    redis_async: aioredis.Redis, keys: KeySpace
) -> None:
    c = await fenced(redis_async, keys, block_ms=3_000)
    published = await publish(redis_async, keys, 3)
    stop = asyncio.Event()
    seen = Collector()
    running = asyncio.ensure_future(c.run(seen, stop))
    while len(seen.ids) < 3:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.2)  # inside the wait that carries the batch's ack
    stop.set()
    await asyncio.wait_for(running, 2.0)  # the stop ends the 3-s wait at once
    assert seen.ids == published
    assert await pending_ids(redis_async, keys) == []
