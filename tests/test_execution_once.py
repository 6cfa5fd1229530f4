"""Exactly one order result per order on the stream, also when PostgreSQL fails between
publish and mark (real PostgreSQL, real Redis, the real consumer loop); every result carries the
order's size in the versions that have it, and one rebuilt from the row is the same result."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from decimal import Decimal
from typing import Any

import psycopg
import pytest
import redis.asyncio as aioredis
from redis.crc import key_slot

from core.errors import LeaseLostError
from core.redis.guarded import LeaseGuard
from core.settings import ServiceSettings
from core.topics import KeySpace, ServiceName, Topic
from services.execution.once import OncePublisher, Published
from services.execution.service import ExecutionService
from services.execution.store import PostgresStore
from services.runtime import ServiceContext, run_consuming_service
from tests.support.execution import execute_batch
from tests.support.servers import PG_ADMIN_URL
from tests.transport_helpers import poll_until

pytestmark = pytest.mark.integration

ORDERS = 12


def _order(i: int) -> dict[str, Any]:
    return {
        "order_id": f"ord-{i:03d}",
        "signal_id": f"sig-{i:03d}",
        "symbol": ("BTC/USDT", "ETH/USDT", "SOL/USDT")[i % 3],
        "side": "BUY" if i % 2 else "SELL",
        "order_type": "MARKET",
        "quantity": 0.01 + i / 1000,
        "price": 50_000.0 + i,
    }


class _DatabaseKiller:
    """Breaks PostgreSQL for the store under test: terminates every backend of its database
    (the store's own connection among them) and, for an outage, refuses new connections."""

    def __init__(self, database_url: str) -> None:
        self.database = database_url.rsplit("/", 1)[1]

    async def terminate(self) -> int:
        async with await psycopg.AsyncConnection.connect(PG_ADMIN_URL, autocommit=True) as admin:
            cur = await admin.execute(
                "SELECT count(pg_terminate_backend(pid)) AS n FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                (self.database,),
            )
            row = await cur.fetchone()
            return int(row[0]) if row else 0

    async def allow_connections(self, allowed: bool) -> None:
        async with await psycopg.AsyncConnection.connect(PG_ADMIN_URL, autocommit=True) as admin:
            await admin.execute(
                f'ALTER DATABASE "{self.database}" ALLOW_CONNECTIONS {"true" if allowed else "false"}'
            )


class _MarkFailsStore(PostgresStore):
    """A real PostgresStore whose connection is killed just before each of the first
    ``failures`` marks of every order (after its result was published; marks are written a
    batch at a time, so every order of a batch whose mark fails counts one failure)."""

    def __init__(self, url: str, schema: str, killer: _DatabaseKiller, failures: int) -> None:
        super().__init__(url, schema)
        self.killer = killer
        self.failures = failures
        self.failed: Counter[str] = Counter()

    async def mark_published_many(self, marks: Sequence[tuple[str, str]]) -> None:
        if any(self.failed[order_id] < self.failures for order_id, _ in marks):
            self.failed.update(order_id for order_id, _ in marks)
            await self.killer.terminate()  # the real call below now fails on a dead connection
        await super().mark_published_many(marks)


class _OutageStore(PostgresStore):
    """A real PostgresStore; the first mark starts a database outage of ``outage_s`` seconds
    (every connection terminated, new ones refused), so that mark and whatever follows fail."""

    def __init__(self, url: str, schema: str, killer: _DatabaseKiller, outage_s: float) -> None:
        super().__init__(url, schema)
        self.killer = killer
        self.outage_s = outage_s
        self.outage: asyncio.Task[None] | None = None

    async def mark_published_many(self, marks: Sequence[tuple[str, str]]) -> None:
        if self.outage is None:
            await self.killer.allow_connections(False)
            await self.killer.terminate()
            self.outage = asyncio.create_task(self._end_outage())
        await super().mark_published_many(marks)

    async def _end_outage(self) -> None:
        await asyncio.sleep(self.outage_s)
        await self.killer.allow_connections(True)


@pytest.fixture
async def killer(pg_database: str) -> AsyncIterator[_DatabaseKiller]:
    k = _DatabaseKiller(pg_database)
    yield k
    await k.allow_connections(True)  # whatever the test did


async def _run_execution(
    redis_async: aioredis.Redis, keys: KeySpace, store: PostgresStore, checker: PostgresStore
) -> tuple[ServiceContext, Counter[str]]:
    """Publish ORDERS orders, run execution on ``store`` until ``checker`` (a second store on
    the same schema) sees every one marked published; return the context and how many
    entries each order id has on the results stream."""
    settings = ServiceSettings.load(
        ServiceName.EXECUTION,
        environ={},
        overrides={
            "key_prefix": keys.prefix,
            "use_pydantic_contracts": True,
            "reclaim_idle_ms": 1_000,  # the lowest accepted: a failed entry is retried after 1 s
            "consumer_block_ms": 50,
            "max_deliveries": 100,
        },
    )
    ctx = ServiceContext.create(ServiceName.EXECUTION, settings, redis_async)
    await ctx.publisher.publish_many(
        Topic.ORDERS, [ctx.codec.build(Topic.ORDERS, _order(i)) for i in range(ORDERS)]
    )
    svc = ExecutionService(ctx, store)
    stop = asyncio.Event()
    running = asyncio.create_task(run_consuming_service(svc, ctx, stop, status_interval_s=0.5))

    async def all_marked() -> bool:
        try:
            stored = [await checker.get(_order(i)["order_id"]) for i in range(ORDERS)]
        except psycopg.OperationalError:
            await checker.close()
            return False
        return all(s is not None and s.published for s in stored)

    done = False

    async def poll() -> None:
        nonlocal done
        done = await all_marked()
        if not done:
            await asyncio.sleep(0.1)

    try:
        await poll_until(poll, lambda: done, timeout_s=60)
    finally:
        stop.set()
        await asyncio.wait_for(running, timeout=10)
        await checker.close()
    entries = await redis_async.xrange(keys.stream(Topic.ORDER_RESULTS))
    per_order = Counter(json.loads(fields[b"order_id"]) for _, fields in entries)
    return ctx, per_order


async def test_execution__mark_fails_after_publish__one_result_per_order_on_the_stream(
    redis_async: aioredis.Redis, keys: KeySpace, pg_database: str, killer: _DatabaseKiller
) -> None:
    schema = f"once_{uuid.uuid4().hex[:8]}"
    store = _MarkFailsStore(pg_database, schema, killer, failures=3)
    await store.migrate()
    try:
        ctx, per_order = await _run_execution(redis_async, keys, store, PostgresStore(pg_database, schema))
        rows = await store.rows()
    finally:
        await store.drop_schema()
        await store.close()

    assert sum(store.failed.values()) == 3 * ORDERS  # every order's mark really failed three times
    assert per_order == Counter({_order(i)["order_id"]: 1 for i in range(ORDERS)})
    assert [r["order_id"] for r in rows] == [_order(i)["order_id"] for i in range(ORDERS)]
    assert ctx.extra_counts.get("results_already_published") == 3 * ORDERS


async def test_execution__database_outage_after_a_publish__one_result_per_order_on_the_stream(
    redis_async: aioredis.Redis, keys: KeySpace, pg_database: str, killer: _DatabaseKiller
) -> None:
    schema = f"outage_{uuid.uuid4().hex[:8]}"
    store = _OutageStore(pg_database, schema, killer, outage_s=3.0)
    await store.migrate()
    try:
        _, per_order = await _run_execution(redis_async, keys, store, PostgresStore(pg_database, schema))
        rows = await store.rows()
    finally:
        await killer.allow_connections(True)
        await store.drop_schema()
        await store.close()

    assert store.outage is not None  # the outage happened ...
    assert store.outage.done()  # ... and ended
    assert per_order == Counter({_order(i)["order_id"]: 1 for i in range(ORDERS)})
    assert len(rows) == ORDERS


def _result_values(order_id: str) -> dict[str, Any]:
    return {
        "order_id": order_id,
        "symbol": "BTC/USDT",
        "side": "BUY",
        "status": "FILLED",
        "filled_quantity": 0.01,
        "average_price": 50_000.0,
        "fee": 0.05,
        "reason": None,
        "simulated": True,
    }


def _once_publisher(redis: aioredis.Redis, keys: KeySpace) -> tuple[ServiceContext, OncePublisher]:
    settings = ServiceSettings.load(ServiceName.EXECUTION, environ={}, overrides={"key_prefix": keys.prefix})
    ctx = ServiceContext.create(ServiceName.EXECUTION, settings, redis)
    return ctx, OncePublisher(ctx.publisher, Topic.ORDER_RESULTS)


async def test_once_publisher__called_again__returns_the_first_id_and_adds_nothing(
    redis_async: aioredis.Redis, keys: KeySpace
) -> None:
    ctx, once = _once_publisher(redis_async, keys)
    values = _result_values("ord-1")
    result = ctx.codec.build(Topic.ORDER_RESULTS, values)

    first = await once.publish("ord-1", result)
    again = await once.publish("ord-1", result)
    other = await once.publish("ord-2", ctx.codec.build(Topic.ORDER_RESULTS, {**values, "order_id": "ord-2"}))

    assert (first.new, again.new, other.new) == (True, False, True)
    assert again.stream_id == first.stream_id != other.stream_id
    entries = await redis_async.xrange(keys.stream(Topic.ORDER_RESULTS))
    assert [e[0].decode() for e in entries] == [first.stream_id, other.stream_id]
    marker = keys.published_marker(Topic.ORDER_RESULTS, "ord-1")
    assert (await redis_async.get(marker)) == first.stream_id.encode()
    assert 0 < await redis_async.ttl(marker) <= once.marker_ttl_s


async def test_once_publisher_under_a_lease__publishes_while_it_is_held_and_nothing_once_it_moved(
    any_redis: aioredis.Redis, keys: KeySpace
) -> None:
    ctx, once = _once_publisher(any_redis, keys)
    results = {i: ctx.codec.build(Topic.ORDER_RESULTS, _result_values(f"ord-{i}")) for i in (1, 2)}
    guard = LeaseGuard(keys.lease(ServiceName.EXECUTION, 0), "me", keys.stream(Topic.ORDERS, 0))
    await any_redis.set(guard.lease, "me")

    [first] = await once.publish_many([("ord-1", results[1])], guard)
    assert isinstance(first, Published)
    assert first.new

    await any_redis.set(guard.lease, "heir")
    with pytest.raises(LeaseLostError, match="held by heir"):
        await once.publish_many([("ord-2", results[2]), ("ord-1", results[1])], guard)
    await any_redis.delete(guard.lease)
    with pytest.raises(LeaseLostError, match="held by nobody"):
        await once.publish_many([("ord-2", results[2])], guard)

    entries = await any_redis.xrange(keys.stream(Topic.ORDER_RESULTS))
    assert [e[0].decode() for e in entries] == [first.stream_id]  # nothing after the lease moved
    assert await any_redis.get(keys.published_marker(Topic.ORDER_RESULTS, "ord-2")) is None
    [unguarded] = await once.publish_many([("ord-2", results[2])])  # no lease asked: published
    assert isinstance(unguarded, Published)
    assert unguarded.new


@pytest.mark.parametrize("keys", [KeySpace(), KeySpace("staging:"), KeySpace("{cdb}:"), KeySpace("x:", 4)])
def test_published_marker__shares_its_stream_slot_and_starts_with_the_prefix(keys: KeySpace) -> None:
    for partition in range(keys.partitions):
        stream = keys.stream(Topic.ORDER_RESULTS, partition)
        marker = keys.published_marker(Topic.ORDER_RESULTS, "ord-1", partition)
        assert key_slot(marker.encode()) == key_slot(stream.encode())
        assert marker.startswith(keys.prefix)
        assert marker != stream


def _results(entries: list[Any]) -> dict[str, dict[str, Any]]:
    """Each result's fields (JSON-decoded) by order id, without the build time."""
    return {
        json.loads(f[b"order_id"]): {k.decode(): json.loads(v) for k, v in f.items() if k != b"timestamp"}
        for _, f in entries
    }


@pytest.mark.parametrize("version", ["v1.0", "v1.1", "v2.0"])
async def test_execution__results_carry_the_ordered_quantity_and_a_rebuilt_result_is_the_same(
    redis_async: aioredis.Redis, keys: KeySpace, pg_database: str, version: str
) -> None:
    settings = ServiceSettings.load(
        ServiceName.EXECUTION,
        environ={},
        overrides={
            "key_prefix": keys.prefix,
            "use_pydantic_contracts": True,
            "produce_version_order_results": version,
        },
    )
    ctx = ServiceContext.create(ServiceName.EXECUTION, settings, redis_async)
    store = PostgresStore(pg_database, schema=f"ordered_{uuid.uuid4().hex[:8]}")
    svc = ExecutionService(ctx, store)
    await svc.start()
    # Filled, partially filled (notional above the venue's 900), rejected (below its 10).
    sizes = {"ord-full": 0.011, "ord-part": 0.05, "ord-tiny": 0.0001}
    orders = [
        ctx.codec.build(Topic.ORDERS, {**_order(i), "order_id": oid, "quantity": qty})
        for i, (oid, qty) in enumerate(sizes.items())
    ]
    stream = keys.stream(Topic.ORDER_RESULTS)
    try:
        decoded = [ctx.codec.from_fields(Topic.ORDERS, ctx.codec.to_fields(Topic.ORDERS, o)) for o in orders]
        assert await execute_batch(svc, [(d, f"1-{i}") for i, d in enumerate(decoded)]) == {}
        first = await redis_async.xrange(stream)
        # The server loses the results and their markers (restarted from an older snapshot):
        # the redelivered orders rebuild them from their rows and publish them again.
        await redis_async.xdel(stream, *[entry_id for entry_id, _ in first])
        await redis_async.delete(*[keys.published_marker(Topic.ORDER_RESULTS, oid) for oid in sizes])
        assert await execute_batch(svc, [(d, f"2-{i}") for i, d in enumerate(decoded)]) == {}
        rebuilt = await redis_async.xrange(stream)
        rows = {r["order_id"]: r for r in await store.rows()}
    finally:
        await store.drop_schema()
        await store.close()

    results = _results(first)
    assert {oid: r["status"] for oid, r in results.items()} == {
        "ord-full": "FILLED",
        "ord-part": "PARTIALLY_FILLED",
        "ord-tiny": "REJECTED",
    }
    assert ctx.extra_counts["results_republished"] == len(orders)
    assert _results(rebuilt) == results  # field for field, ordered_quantity included
    for oid, size in sizes.items():
        assert rows[oid]["ordered_quantity"] == Decimal(repr(size))  # stored exact, as ordered
        result = results[oid]
        if version == "v1.0":
            assert "ordered_quantity" not in result  # dropped by the declared down-conversion
            continue
        ordered, filled = Decimal(str(result["ordered_quantity"])), Decimal(str(result["filled_quantity"]))
        assert ordered == Decimal(repr(size))
        assert filled <= ordered
        if version == "v2.0":
            assert isinstance(result["ordered_quantity"], str)  # an exact decimal string on the wire
