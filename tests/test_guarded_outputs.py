"""Outputs sent under a partition lease (core.redis.guarded): on one server the lease check
rides in the write itself, so a stale owner's outputs are refused by Redis, and a batch's
outputs cost no round trip of their own for the check; on a cluster the lease is read first."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.codec import build_codec
from core.errors import LeaseLostError, NotReplicatedError
from core.redis import Publisher
from core.redis.connection import open_target
from core.redis.guarded import LeaseGuard
from core.redis.modes import RedisTarget
from core.settings import ServiceSettings
from core.topics import CodecPath, KeySpace, ServiceName, Topic
from harness.local_topologies import LocalRedisCluster
from services.execution.once import OncePublisher, Published
from services.runtime import ServiceContext
from tests.transport_helpers import make_messages, valid_values

pytestmark = pytest.mark.integration

CODEC = build_codec(CodecPath.PYDANTIC)
TOPIC = Topic.SIGNALS


def _guard(keys: KeySpace, owner: str = "me") -> LeaseGuard:
    lease = keys.lease(ServiceName.SIGNAL, 0)
    return LeaseGuard(lease, owner, keys.stream(Topic.MARKET_DATA, 0))


def _publisher(client: Any, keys: KeySpace, **options: Any) -> Publisher:
    return Publisher(client, CODEC, keys=keys, service=ServiceName.SIGNAL, **options)


def _defer(publisher: Publisher, messages: list[Any]) -> None:
    for i, message in enumerate(messages):
        publisher.begin(f"{i + 1}-0")
        publisher.defer(TOPIC, message)


async def _stream_ids(client: Any, keys: KeySpace) -> list[str]:
    ids: list[str] = []
    for stream in keys.streams(TOPIC):
        ids += [entry_id.decode() for entry_id, _ in await client.xrange(stream)]
    return ids


async def test_guarded_flush__lease_held__every_output_on_its_stream_and_channel_in_one_round_trip(
    redis_async: aioredis.Redis, keys: KeySpace, writes: list[int]
) -> None:
    await redis_async.set(_guard(keys).lease, "me")
    publisher = _publisher(redis_async, keys)
    messages = make_messages(CODEC, TOPIC, 5)
    pubsub = redis_async.pubsub()
    await pubsub.subscribe(keys.channel(TOPIC))
    await pubsub.get_message(timeout=1.0)  # the subscribe confirmation
    _defer(publisher, messages[:1])
    assert await publisher.flush_outputs(_guard(keys)) == {}  # warm: a connection, the script loaded
    _defer(publisher, messages[1:])
    writes[0] = 0
    assert await publisher.flush_outputs(_guard(keys)) == {}
    assert writes[0] == 1  # the check is inside the write
    rows = await redis_async.xrange(keys.stream(TOPIC))
    assert [CODEC.from_fields(TOPIC, fields).message for _, fields in rows] == messages  # in order, exact
    assert publisher.written[keys.stream(TOPIC)] == rows[-1][0].decode()
    bodies = []
    while len(bodies) < 5:
        message = await pubsub.get_message(timeout=1.0)
        assert message is not None, f"only {len(bodies)} of 5 Pub/Sub copies arrived"
        bodies.append(CODEC.decode(TOPIC, message["data"]).message)
    assert bodies == messages
    await pubsub.aclose()


async def test_guarded_flush__lease_moved__raises_naming_the_holder_and_writes_nothing(
    redis_async: aioredis.Redis, keys: KeySpace
) -> None:
    await redis_async.set(_guard(keys).lease, "the-new-owner")
    publisher = _publisher(redis_async, keys.with_partitions(4))
    _defer(publisher, make_messages(CODEC, TOPIC, 8))
    with pytest.raises(LeaseLostError, match="held by the-new-owner"):
        await publisher.flush_outputs(_guard(keys))
    assert await _stream_ids(redis_async, keys.with_partitions(4)) == []
    assert publisher.deferred == 0  # taken: a stale owner's outputs never go out later


async def test_guarded_flush__lease_expired__refused_as_held_by_nobody(
    redis_async: aioredis.Redis, keys: KeySpace
) -> None:
    publisher = _publisher(redis_async, keys)
    _defer(publisher, make_messages(CODEC, TOPIC, 2))
    with pytest.raises(LeaseLostError, match="held by nobody"):
        await publisher.flush_outputs(_guard(keys))
    assert await redis_async.xlen(keys.stream(TOPIC)) == 0


async def test_guarded_flush__partitions_and_chunks__each_output_once_in_its_partition_in_order(
    redis_async: aioredis.Redis, keys: KeySpace
) -> None:
    space = keys.with_partitions(4)
    await redis_async.set(_guard(space).lease, "me")
    publisher = _publisher(redis_async, space, chunk=3)  # several scripts per partition
    messages = make_messages(CODEC, TOPIC, 40)
    _defer(publisher, messages)
    assert await publisher.flush_outputs(_guard(space)) == {}
    for partition, stream in enumerate(space.streams(TOPIC)):
        rows = await redis_async.xrange(stream)
        mine = [m for m in messages if space.partition(m.symbol) == partition]
        assert [CODEC.from_fields(TOPIC, fields).message for _, fields in rows] == mine
    assert len(await _stream_ids(redis_async, space)) == 40


async def test_guarded_flush__replica_wait_on_a_server_without_replicas__names_every_output(
    redis_async: aioredis.Redis, keys: KeySpace
) -> None:
    await redis_async.set(_guard(keys).lease, "me")
    publisher = _publisher(redis_async, keys, wait_replicas=1, wait_timeout_ms=10)
    _defer(publisher, make_messages(CODEC, TOPIC, 3))
    with pytest.raises(NotReplicatedError) as info:
        await publisher.flush_outputs(_guard(keys))
    assert info.value.unacknowledged == [0, 1, 2]
    assert (info.value.wanted, info.value.acknowledged) == (1, 0)
    assert await redis_async.xlen(keys.stream(TOPIC)) == 3  # on the primary, unconfirmed


async def test_guarded_flush__server_without_the_script__each_output_written_once(
    throwaway_clients: tuple[redis.Redis, aioredis.Redis],
) -> None:
    sync, client = throwaway_clients
    keys = KeySpace("guarded:")
    sync.set(_guard(keys).lease, "me")
    publisher = _publisher(client, keys)
    _defer(publisher, make_messages(CODEC, TOPIC, 4))
    assert await publisher.flush_outputs(_guard(keys)) == {}
    _defer(publisher, make_messages(CODEC, TOPIC, 2, start=4))
    assert await publisher.flush_outputs(_guard(keys)) == {}
    assert sync.xlen(keys.stream(TOPIC)) == 6
    stats = sync.info("commandstats")
    assert stats["cmdstat_eval"]["calls"] == 1  # the source once, after NOSCRIPT
    assert stats["cmdstat_evalsha"]["calls"] == 2


_REASON = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=60)


def _guarded_and_plain(keys: KeySpace) -> tuple[KeySpace, KeySpace]:
    """Fresh key spaces under ``keys``, one to write under a lease, one without: hypothesis runs
    every example in the one test's fixtures."""
    run = uuid.uuid4().hex[:8]
    return KeySpace(f"{keys.prefix}{run}:g:"), KeySpace(f"{keys.prefix}{run}:p:")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(reasons=st.lists(_REASON, min_size=1, max_size=6))
async def test_guarded_flush__any_field_text__reads_back_exactly_as_the_plain_publish_writes_it(
    redis_async: aioredis.Redis, keys: KeySpace, reasons: list[str]
) -> None:
    guarded, plain = _guarded_and_plain(keys)
    await redis_async.set(_guard(guarded).lease, "me")
    messages = [CODEC.build(TOPIC, {**valid_values(TOPIC, i), "reason": r}) for i, r in enumerate(reasons)]
    publisher = _publisher(redis_async, guarded)
    _defer(publisher, messages)
    assert await publisher.flush_outputs(_guard(guarded)) == {}
    await _publisher(redis_async, plain).publish_many(TOPIC, messages)
    written = [fields for _, fields in await redis_async.xrange(guarded.stream(TOPIC))]
    expected = [fields for _, fields in await redis_async.xrange(plain.stream(TOPIC))]
    assert written == expected  # byte for byte, '%', multi-byte and control characters included
    assert [CODEC.from_fields(TOPIC, fields).message.reason for fields in written] == reasons


async def test_guarded_flush__on_a_cluster__the_lease_is_read_first_and_a_moved_one_stops_the_flush(
    cluster: LocalRedisCluster, cluster_keys: KeySpace
) -> None:
    client = await open_target(RedisTarget(cluster.url))
    try:
        guard = _guard(cluster_keys)
        publisher = _publisher(client, cluster_keys)
        messages = make_messages(CODEC, TOPIC, 12)
        await client.set(guard.lease, "me")
        _defer(publisher, messages)
        assert await publisher.flush_outputs(guard) == {}  # outputs in other slots than the lease
        assert len(await _stream_ids(client, cluster_keys)) == 12
        await client.set(guard.lease, "the-new-owner")
        _defer(publisher, messages)
        with pytest.raises(LeaseLostError, match="held by the-new-owner"):
            await publisher.flush_outputs(guard)
        assert len(await _stream_ids(client, cluster_keys)) == 12  # nothing more
    finally:
        await client.aclose()


async def test_once_publisher_under_a_lease__on_a_cluster__reads_it_first_and_a_moved_one_stops_it(
    cluster: LocalRedisCluster, cluster_keys: KeySpace
) -> None:
    client = await open_target(RedisTarget(cluster.url))
    try:
        overrides = {"key_prefix": cluster_keys.prefix, "topic_partitions": 4}
        settings = ServiceSettings.load(ServiceName.EXECUTION, environ={}, overrides=overrides)
        ctx = ServiceContext.create(ServiceName.EXECUTION, settings, client)
        once = OncePublisher(ctx.publisher, Topic.ORDER_RESULTS)
        items = [
            (f"ord-{i}", ctx.codec.build(Topic.ORDER_RESULTS, valid_values(Topic.ORDER_RESULTS, i)))
            for i in range(12)
        ]
        guard = LeaseGuard(
            cluster_keys.lease(ServiceName.EXECUTION, 0), "me", cluster_keys.stream(Topic.ORDERS, 0)
        )
        await client.set(guard.lease, "me")
        outcomes = await once.publish_many(items, guard)  # results in other slots than the lease
        assert all(isinstance(o, Published) and o.new for o in outcomes)
        await client.set(guard.lease, "the-new-owner")
        with pytest.raises(LeaseLostError, match="held by the-new-owner"):
            await once.publish_many([(f"new-{i}", m) for i, (_, m) in enumerate(items)], guard)
        streams = ctx.publisher.keys.streams(Topic.ORDER_RESULTS)
        assert len(streams) == 4
        written = sum([len(await client.xrange(s)) for s in streams])
        assert written == 12  # nothing more
    finally:
        await client.aclose()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(reasons=st.lists(_REASON, min_size=1, max_size=4))
async def test_once_publisher_under_a_lease__any_field_text__writes_what_it_writes_without_one(
    redis_async: aioredis.Redis, keys: KeySpace, reasons: list[str]
) -> None:
    # The lease owner rides after the fields: the script must count it out of them.
    written = []
    for space, fenced in zip(_guarded_and_plain(keys), (True, False), strict=True):
        settings_ = ServiceSettings.load(
            ServiceName.EXECUTION, environ={}, overrides={"key_prefix": space.prefix}
        )
        ctx = ServiceContext.create(ServiceName.EXECUTION, settings_, redis_async)
        guard = LeaseGuard(space.lease(ServiceName.EXECUTION, 0), "owner %s ✓", space.stream(Topic.ORDERS, 0))
        await redis_async.set(guard.lease, guard.owner)
        items = [
            (
                f"ord-{i}",
                ctx.codec.build(Topic.ORDER_RESULTS, {**valid_values(Topic.ORDER_RESULTS, i), "reason": r}),
            )
            for i, r in enumerate(reasons)
        ]
        outcomes = await OncePublisher(ctx.publisher, Topic.ORDER_RESULTS).publish_many(
            items, guard if fenced else None
        )
        assert all(isinstance(o, Published) and o.new for o in outcomes)
        written.append([fields for _, fields in await redis_async.xrange(space.stream(Topic.ORDER_RESULTS))])
    assert written[0] == written[1]
    assert [json.loads(fields[b"reason"]) for fields in written[0]] == reasons
