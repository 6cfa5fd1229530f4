"""Execution finishes a batch of orders together (services.execution.service): one store round
trip and one commit for all its fills, one Redis round trip for all its publishes, and still
exactly one row and one result per order, store-first, with every failure kept to its own order
(real PostgreSQL, real Redis, the real consumer)."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
import redis.asyncio as aioredis

from core.codec import Decoded
from core.errors import LeaseLostError, NotReplicatedError, TransportError
from core.redis import StreamConsumer
from core.redis.wire import send_pipelined
from core.settings import ServiceSettings
from core.topics import KeySpace, ServiceName, Topic
from services.execution.once import _ONCE_SCRIPT, OncePublisher
from services.execution.service import ExecutionService
from services.execution.store import PostgresStore, StoredResult
from services.runtime import ServiceContext
from tests.support.execution import execute_batch

pytestmark = pytest.mark.integration


def _order(i: int, **changes: Any) -> dict[str, Any]:
    return {
        "order_id": f"ord-{i:03d}",
        "signal_id": f"sig-{i:03d}",
        "symbol": "BTC/USDT",
        "side": "BUY" if i % 2 else "SELL",
        "order_type": "MARKET",
        "quantity": 0.01 + i / 1000,
        "price": 50_000.0 + i,
        **changes,
    }


class _CountingStore(PostgresStore):
    """A real PostgresStore that records each call execution makes, and can fail the next
    batch insert after it committed (the reply lost: the harshest moment for a store failure)."""

    def __init__(self, url: str, schema: str) -> None:
        super().__init__(url, schema)
        self.calls: list[str] = []
        self.fail_after_commit = 0

    async def insert_or_get(self, values: dict[str, Any], path: str) -> StoredResult:
        self.calls.append("insert_or_get")
        return await super().insert_or_get(values, path)

    async def insert_or_get_many(self, rows: Sequence[dict[str, Any]], path: str) -> dict[str, StoredResult]:
        self.calls.append("insert_or_get_many")
        stored = await super().insert_or_get_many(rows, path)
        if self.fail_after_commit:
            self.fail_after_commit -= 1
            raise psycopg.OperationalError("server closed the connection unexpectedly")
        return stored

    async def mark_published_many(self, marks: Sequence[tuple[str, str]]) -> None:
        self.calls.append("mark_published_many")
        await super().mark_published_many(marks)


@dataclass
class _Rig:
    """Execution on a fresh schema, its consumer of ``orders`` and a count of the publish round
    trips (every script pipeline goes through core.redis.scripts' send_pipelined)."""

    ctx: ServiceContext
    store: _CountingStore
    svc: ExecutionService
    redis: aioredis.Redis
    keys: KeySpace
    redis_trips: list[int]

    def consumer(self, instance: str = "x1", **options: Any) -> StreamConsumer:
        options.setdefault("reclaim_idle_ms", 1_000)
        return StreamConsumer(
            self.redis,
            topic=Topic.ORDERS,
            service=ServiceName.EXECUTION,
            codec=self.ctx.codec,
            keys=self.keys,
            instance=instance,
            block_ms=0,
            metrics=self.ctx.metrics,
            dead_letters=self.ctx.dead_letters,
            outputs=self.ctx.publisher,
            finish_batch=self.svc.finish_batch,
            before_ack=self.svc.before_ack,
            **options,
        )

    async def send_orders(self, orders: Sequence[dict[str, Any]]) -> None:
        codec = self.ctx.codec
        await self.ctx.publisher.publish_many(Topic.ORDERS, [codec.build(Topic.ORDERS, o) for o in orders])

    async def results(self) -> Counter[str]:
        """How many entries each order id has on the results stream."""
        entries: Any = await self.redis.xrange(self.keys.stream(Topic.ORDER_RESULTS))
        return Counter(json.loads(fields[b"order_id"]) for _, fields in entries)

    async def pending(self) -> int:
        info = await self.redis.xpending(
            self.keys.stream(Topic.ORDERS), self.keys.group(ServiceName.EXECUTION)
        )
        return int(info["pending"])

    def decoded(self, order: dict[str, Any]) -> Decoded:
        codec = self.ctx.codec
        return codec.from_fields(
            Topic.ORDERS, codec.to_fields(Topic.ORDERS, codec.build(Topic.ORDERS, order))
        )


@pytest.fixture
async def rig(
    redis_async: aioredis.Redis, keys: KeySpace, pg_database: str, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[_Rig]:
    settings = ServiceSettings.load(
        ServiceName.EXECUTION,
        environ={},
        overrides={"key_prefix": keys.prefix, "use_pydantic_contracts": True, "max_deliveries": 5},
    )
    ctx = ServiceContext.create(ServiceName.EXECUTION, settings, redis_async)
    store = _CountingStore(pg_database, f"batch_{uuid.uuid4().hex[:8]}")
    svc = ExecutionService(ctx, store)
    await svc.start()
    # The server keeps scripts across tests: load this one now, so a fresh server's NOSCRIPT resend
    # (a second round trip, tested in tests/test_redis_scripts.py) is not counted as the batch's.
    await redis_async.script_load(_ONCE_SCRIPT.source)
    trips: list[int] = []

    async def counted(*args: Any, **kwargs: Any) -> None:
        trips.append(1)
        await send_pipelined(*args, **kwargs)

    monkeypatch.setattr("core.redis.scripts.send_pipelined", counted)
    try:
        yield _Rig(ctx, store, svc, redis_async, keys, trips)
    finally:
        await store.drop_schema()
        await store.close()


async def test_a_batch_of_five_orders__one_store_insert_one_redis_round_trip_one_mark(rig: _Rig) -> None:
    await rig.send_orders([_order(i) for i in range(5)])
    consumer = rig.consumer()
    await consumer.ensure_group()

    assert await consumer.poll_once(rig.svc.handle) == 5

    assert rig.store.calls == ["insert_or_get_many", "mark_published_many"]
    assert len(rig.redis_trips) == 1  # five publish scripts in one pipeline
    assert await rig.results() == Counter({_order(i)["order_id"]: 1 for i in range(5)})
    rows = [await rig.store.get(_order(i)["order_id"]) for i in range(5)]
    assert all(r is not None and r.published for r in rows)  # marked before the ack
    assert await rig.pending() == 0
    assert rig.ctx.extra_counts["fills"] + rig.ctx.extra_counts.get("rejected_orders", 0) == 5


@pytest.mark.parametrize("batch", [3, 1], ids=["in a batch of three", "alone"])
async def test_an_order_the_store_refuses__is_dead_lettered_alone_with_the_store_s_reason(
    rig: _Rig, batch: int
) -> None:
    # PostgreSQL refuses a NUL in a text (the order contract admits it). The batch's one
    # statement failed for all its orders, which then looked like an outage: retried until
    # "delivered 6 times", good orders included, the cause nowhere.
    refused = _order(1, order_id="ord-\u0000-1")
    orders = [_order(0), refused, _order(2)] if batch > 1 else [refused]
    await rig.send_orders(orders)
    consumer = rig.consumer()
    await consumer.ensure_group()

    await consumer.poll_once(rig.svc.handle)

    good = [o["order_id"] for o in orders if o is not refused]
    assert await rig.results() == Counter({order_id: 1 for order_id in good})
    assert await rig.pending() == 0  # the refused order is settled: dead-lettered at once
    letters: Any = await rig.redis.xrange(rig.keys.dlq(Topic.ORDERS))
    assert [(f[b"reason"], f[b"cause"]) for _, f in letters] == [(b"store_refused", b"handler_failed")]
    assert b"NUL" in letters[0][1][b"error"]
    assert [r["order_id"] for r in await rig.store.rows()] == good


async def test_one_bad_order__the_others_of_its_batch_are_stored_published_and_acknowledged(
    rig: _Rig,
) -> None:
    orders = [_order(i) for i in range(5)]
    # Order 1: Redis refuses its script (its marker key holds the wrong type): retried alone.
    refused = rig.keys.published_marker(Topic.ORDER_RESULTS, orders[1]["order_id"])
    await rig.redis.hset(refused, "x", "1")
    # Order 3: its stored row cannot become a result (a corrupt status): dead-lettered alone.
    corrupt = {**rig.svc.venue.fill(rig.ctx.codec.build(Topic.ORDERS, orders[3])), "status": "BOGUS"}
    await rig.store.insert(corrupt, "pydantic")
    await rig.send_orders(orders)
    consumer = rig.consumer()
    await consumer.ensure_group()

    await consumer.poll_once(rig.svc.handle)

    good = {o["order_id"]: 1 for i, o in enumerate(orders) if i not in (1, 3)}
    assert await rig.results() == Counter(good)
    assert len(rig.redis_trips) == 1
    assert await rig.pending() == 1  # order 1, for a retry; order 3 acknowledged as dead-lettered
    letters: Any = await rig.redis.xrange(rig.keys.dlq(Topic.ORDERS))
    assert len(letters) == 1
    assert orders[3]["order_id"] in str(letters[0][1])

    await rig.redis.delete(refused)  # whatever was wrong with it is repaired
    retry = rig.consumer()  # same name (a restart): re-reads its own pending order first
    await retry.poll_once(rig.svc.handle)

    assert await rig.results() == Counter({**good, orders[1]["order_id"]: 1})
    assert await rig.pending() == 0
    assert len(await rig.store.rows()) == 5  # one row per order, the corrupt one included


async def test_store_fails__nothing_published_nor_acked_and_the_redelivery_gives_one_row_and_result(
    rig: _Rig,
) -> None:
    await rig.send_orders([_order(i) for i in range(4)])
    rig.store.fail_after_commit = 1  # the rows commit, the reply is lost
    consumer = rig.consumer()
    await consumer.ensure_group()

    with pytest.raises(TransportError, match="could not store 4 results"):
        await consumer.poll_once(rig.svc.handle)
    assert await rig.pending() == 4  # nothing acknowledged: the batch comes back
    assert await rig.results() == Counter()  # store-first: nothing published

    restarted = rig.consumer()  # same name: re-reads its own pending entries first
    assert await restarted.poll_once(rig.svc.handle) == 4

    assert await rig.results() == Counter({_order(i)["order_id"]: 1 for i in range(4)})
    rows = await rig.store.rows()
    assert [r["order_id"] for r in rows] == [_order(i)["order_id"] for i in range(4)]
    assert await rig.pending() == 0


async def test_same_order_twice_in_one_batch__one_row_one_result_and_a_duplicate(rig: _Rig) -> None:
    await rig.send_orders([_order(1), _order(2), _order(1)])  # order 1 published twice upstream
    consumer = rig.consumer()
    await consumer.ensure_group()

    await consumer.poll_once(rig.svc.handle)

    assert await rig.results() == Counter({"ord-001": 1, "ord-002": 1})
    assert len(await rig.store.rows()) == 2
    assert rig.ctx.extra_counts["duplicate_orders"] == 1
    assert rig.ctx.metrics.snapshot()["ignored_by_reason"]["duplicate"] == 1
    assert await rig.pending() == 0  # both entries of order 1 are done


async def test_redelivered_after_publish_before_mark__no_second_result(rig: _Rig) -> None:
    orders = [rig.decoded(_order(i)) for i in range(3)]
    # Published, mark queued, the ack not yet sent: the same instance gets them again.
    assert await execute_batch(rig.svc, [(d, f"1-{i}") for i, d in enumerate(orders)], mark=False) == {}
    assert await execute_batch(rig.svc, [(d, f"1-{i}") for i, d in enumerate(orders)], mark=False) == {}
    assert rig.ctx.extra_counts["duplicate_orders"] == 3
    # The instance died before the marks were written: a new one finds the rows unmarked, and the
    # publish script gives it the first stream ids back.
    again = ExecutionService(rig.ctx, rig.store)
    assert await execute_batch(again, [(d, f"1-{i}") for i, d in enumerate(orders)]) == {}

    assert rig.ctx.extra_counts["results_already_published"] == 3
    assert await rig.results() == Counter({_order(i)["order_id"]: 1 for i in range(3)})
    assert all(s is not None and s.published for s in [await rig.store.get(f"ord-00{i}") for i in range(3)])
    # Marked and acknowledged, then redelivered (a lost ack): a duplicate.
    assert await execute_batch(again, [(d, f"1-{i}") for i, d in enumerate(orders)]) == {}
    assert rig.ctx.extra_counts["duplicate_orders"] == 6
    assert await rig.results() == Counter({_order(i)["order_id"]: 1 for i in range(3)})


async def test_fenced_execution_loses_its_lease_mid_batch__publishes_nothing__the_heir_publishes_its_fills(
    rig: _Rig,
) -> None:
    await rig.send_orders([_order(i) for i in range(3)])
    lease = rig.keys.lease(ServiceName.EXECUTION, 0)
    stale = rig.consumer("a", lease=lease)
    await stale.ensure_group()
    await rig.redis.set(lease, "a")

    async def handle_then_freeze(decoded: Decoded, entry_id: str) -> object:
        await rig.redis.set(lease, "b")  # paused past its lease: "b" owns the partition now
        return await rig.svc.handle(decoded, entry_id)

    with pytest.raises(LeaseLostError, match="held by b"):
        await stale.poll_once(handle_then_freeze)

    # What it read under its lease it may have stored (the rows a crash after the commit
    # leaves too); nothing went out and nothing is marked or acknowledged.
    assert rig.store.calls == ["insert_or_get_many"]
    stored = {row["order_id"]: row for row in await rig.store.rows()}
    assert await rig.results() == Counter()
    assert await rig.pending() == 3

    heir = rig.consumer("b", lease=lease)
    assert await heir.take_over(rig.svc.handle) == 3
    await heir.flush_acks()

    assert await rig.results() == Counter({_order(i)["order_id"]: 1 for i in range(3)})
    assert {row["order_id"]: row for row in await rig.store.rows()} == stored  # the same fills
    assert await rig.pending() == 0


async def test_fenced_batch__its_lease_check_rides_in_the_publish__three_round_trips(
    rig: _Rig, writes: list[int]
) -> None:
    lease = rig.keys.lease(ServiceName.EXECUTION, 0)
    consumer = rig.consumer("a", lease=lease)
    await consumer.ensure_group()
    await rig.redis.set(lease, "a")
    assert await consumer.poll_once(rig.svc.handle) == 0  # the fence's scripts are loaded now
    await rig.send_orders([_order(i) for i in range(3)])
    writes[0] = 0

    assert await consumer.poll_once(rig.svc.handle) == 3

    assert writes[0] == 3  # the fenced read, the results (checking the lease), the fenced ack
    assert await rig.results() == Counter({_order(i)["order_id"]: 1 for i in range(3)})
    assert await rig.pending() == 0


async def test_replicas_short_after_a_batch__the_batch_fails_and_its_retry_adds_no_result(
    rig: _Rig, redis_async: aioredis.Redis, keys: KeySpace
) -> None:
    # One WAIT after the batch's scripts, on their connection; this server has no replica.
    overrides = {"key_prefix": keys.prefix, "use_pydantic_contracts": True}
    overrides |= {"redis_wait_replicas": 1, "redis_wait_timeout_ms": 10}
    settings = ServiceSettings.load(ServiceName.EXECUTION, environ={}, overrides=overrides)
    once = OncePublisher(
        ServiceContext.create(ServiceName.EXECUTION, settings, redis_async).publisher, Topic.ORDER_RESULTS
    )
    values = {"symbol": "BTC/USDT", "side": "BUY", "status": "FILLED", "filled_quantity": 0.01}
    values |= {"average_price": 50_000.0, "fee": 0.05, "reason": None, "simulated": True}
    batch = [
        (f"ord-{i}", rig.ctx.codec.build(Topic.ORDER_RESULTS, {**values, "order_id": f"ord-{i}"}))
        for i in range(3)
    ]

    with pytest.raises(NotReplicatedError):
        await once.publish_many(batch)
    assert len(rig.redis_trips) == 1  # three scripts and the WAIT in one round trip
    with pytest.raises(NotReplicatedError):
        await once.publish_many(batch)  # the retry, still without a replica ...
    assert await rig.results() == Counter({f"ord-{i}": 1 for i in range(3)})  # ... finds them
