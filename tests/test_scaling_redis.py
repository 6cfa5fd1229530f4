"""Past one machine on the real shared Redis: partitioned publishing, replica acknowledgement,
leases and members, the topology check, mode checks, takeover, rebuild and rewind (issue 10)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis

from core.codec import Decoded, build_codec
from core.errors import ConfigError, GroupRewoundError, NotReplicatedError
from core.logging import configure_logging
from core.redis import Publisher, StreamConsumer, publish_message
from core.redis.connection import open_target
from core.redis.leases import PartitionLeases
from core.redis.modes import RedisTarget
from core.redis.topology import ensure_topology, read_partitions
from core.settings import ServiceSettings
from core.topics import CodecPath, KeySpace, RedisMode, ServiceName, Topic
from services.partitions import replay_history
from services.runtime import ServiceContext, run_consuming_service
from services.signal.service import SignalService
from tests.ops_helpers import cdb

pytestmark = pytest.mark.integration

CODEC = build_codec(CodecPath.PYDANTIC)
SYMBOLS = ["BTC/USDT", "ETH/USDT", "SOL/USDT", "XRP/USDT", "DOGE/USDT"]


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """`cdb service` points the JSON logs at CliRunner's stderr, closed after the call: point
    them back at the real stderr so later tests do not log into a closed file."""
    yield
    configure_logging()


def _trade(i: int, symbol: str | None = None) -> Any:
    return CODEC.build(
        Topic.MARKET_DATA,
        {
            "symbol": symbol or SYMBOLS[i % len(SYMBOLS)],
            "price": 100.0 + i,
            "volume": 1.0,
            "side": "BUY",
            "venue": "mexc",
            "timestamp": 1_767_225_600_000 + i,
        },
    )


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def test_publisher__each_message_goes_to_its_symbols_partition_in_order(
    redis_async: aioredis.Redis, keys: KeySpace
) -> None:
    space = keys.with_partitions(4)
    publisher = Publisher(redis_async, CODEC, keys=space, service=ServiceName.WS)
    trades = [_trade(i) for i in range(50)]
    ids = await publisher.publish_many(Topic.MARKET_DATA, trades)
    assert len(ids) == 50
    assert all(ids)
    for p, stream in enumerate(space.streams(Topic.MARKET_DATA)):
        entries = await redis_async.xrange(stream)
        symbols = {_text(f[b"symbol"]).strip('"') for _, f in entries}
        assert all(space.partition(s) == p for s in symbols)
        prices = [float(f[b"price"]) for _, f in entries]
        assert prices == sorted(prices)  # each symbol (and so each partition) keeps its order
    total = sum([await redis_async.xlen(s) for s in space.streams(Topic.MARKET_DATA)])
    assert total == 50


async def test_publisher__replica_wait_on_a_server_without_replicas__names_every_message_to_resend(
    redis_async: aioredis.Redis, keys: KeySpace
) -> None:
    publisher = Publisher(
        redis_async, CODEC, keys=keys, service=ServiceName.WS, wait_replicas=1, wait_timeout_ms=10
    )
    with pytest.raises(NotReplicatedError) as info:
        await publisher.publish_many(Topic.MARKET_DATA, [_trade(i) for i in range(3)])
    assert info.value.unacknowledged == [0, 1, 2]
    assert (info.value.wanted, info.value.acknowledged) == (1, 0)
    assert await redis_async.xlen(keys.stream(Topic.MARKET_DATA)) == 3  # on the primary, unconfirmed


async def test_publisher__replica_wait_with_partitions__positions_refer_to_the_callers_sequence(
    redis_async: aioredis.Redis, keys: KeySpace
) -> None:
    space = keys.with_partitions(4)
    publisher = Publisher(
        redis_async, CODEC, keys=space, service=ServiceName.WS, wait_replicas=1, wait_timeout_ms=10
    )
    with pytest.raises(NotReplicatedError) as info:
        await publisher.publish_many(Topic.MARKET_DATA, [_trade(i) for i in range(7)])
    assert info.value.unacknowledged == list(range(7))


def test_publish_message__routes_by_symbol_and_reports_an_unreplicated_publish(
    redis_sync: redis.Redis, keys: KeySpace
) -> None:
    space = keys.with_partitions(4)
    stream_id = publish_message(redis_sync, Topic.MARKET_DATA, _trade(0, "DOGE/USDT"), keys=space)
    assert redis_sync.xrange(space.stream(Topic.MARKET_DATA, 0))[0][0].decode() == stream_id
    with pytest.raises(NotReplicatedError):
        publish_message(
            redis_sync,
            Topic.MARKET_DATA,
            _trade(1, "BTC/USDT"),
            keys=space,
            wait_replicas=1,
            wait_timeout_ms=10,
        )
    assert redis_sync.xlen(space.stream(Topic.MARKET_DATA, 3)) == 1


async def test_leases__one_owner_at_a_time_and_only_the_owner_renews_or_releases(
    redis_async: aioredis.Redis, keys: KeySpace
) -> None:
    a = PartitionLeases(redis_async, keys, ServiceName.RISK, "a", 5_000)
    b = PartitionLeases(redis_async, keys, ServiceName.RISK, "b", 5_000)
    assert await a.acquire(0)
    assert await a.acquire(0)  # its own lease: extended
    assert not await b.acquire(0)
    assert not await b.renew(0)
    assert not await b.release(0)
    assert await a.owner(0) == "a"
    assert await a.renew(0)
    assert await a.release(0)
    assert await b.acquire(0)


async def test_leases__an_owner_that_stops_renewing_loses_the_partition_after_the_ttl(
    redis_async: aioredis.Redis, keys: KeySpace
) -> None:
    a = PartitionLeases(redis_async, keys, ServiceName.SIGNAL, "a", 100)
    b = PartitionLeases(redis_async, keys, ServiceName.SIGNAL, "b", 100)
    assert await a.acquire(2)
    await asyncio.sleep(0.15)
    assert await b.acquire(2)
    assert not await a.renew(2)  # lost: a must stop and rebuild before taking it again


async def test_members__live_instances_are_listed_a_leaver_at_once_a_silent_one_after_the_ttl(
    redis_async: aioredis.Redis, keys: KeySpace
) -> None:
    a = PartitionLeases(redis_async, keys, ServiceName.SIGNAL, "a", 200)
    b = PartitionLeases(redis_async, keys, ServiceName.SIGNAL, "b", 200)
    c = PartitionLeases(redis_async, keys, ServiceName.SIGNAL, "c", 200)
    await a.heartbeat()
    await b.heartbeat()
    assert await c.heartbeat() == ["a", "b", "c"]
    await b.leave()
    assert await a.members() == ["a", "c"]
    await asyncio.sleep(0.25)
    assert await a.heartbeat() == ["a"]


async def test_ensure_topology__the_first_start_records_the_count_and_a_different_one_is_refused(
    redis_async: aioredis.Redis, keys: KeySpace
) -> None:
    assert await ensure_topology(redis_async, keys.with_partitions(4)) == 4
    assert await ensure_topology(redis_async, keys.with_partitions(4)) == 4
    assert await read_partitions(redis_async, keys) == 4
    with pytest.raises(ConfigError, match="TOPIC_PARTITIONS=2") as info:
        await ensure_topology(redis_async, keys.with_partitions(2))
    assert info.value.accepted == ("4",)
    assert "cdb:topology" in str(info.value)


async def test_run_consuming_service__a_partition_count_other_than_the_pipelines__refuses_to_start(
    redis_async: aioredis.Redis, keys: KeySpace
) -> None:
    await ensure_topology(redis_async, keys.with_partitions(4))  # the running pipeline
    settings = ServiceSettings.load(
        ServiceName.SIGNAL, environ={}, overrides={"key_prefix": keys.prefix, "topic_partitions": 2}
    )
    ctx = ServiceContext.create(ServiceName.SIGNAL, settings, redis_async)
    with pytest.raises(ConfigError, match="TOPIC_PARTITIONS"):
        await run_consuming_service(SignalService(ctx), ctx, asyncio.Event())


@pytest.mark.parametrize("mode", [RedisMode.CLUSTER, RedisMode.SENTINEL])
async def test_open_target__a_redis_mode_the_server_contradicts__is_refused_naming_redis_mode(
    redis_url: str, mode: RedisMode
) -> None:
    with pytest.raises(ConfigError, match=f"REDIS_MODE='{mode.value}'") as info:
        await open_target(RedisTarget(redis_url, mode))
    assert "standalone" in info.value.accepted
    assert "HELLO" in str(info.value)


async def test_open_target__standalone_is_detected_and_accepted(redis_url: str) -> None:
    for mode in (None, RedisMode.STANDALONE):
        client = await open_target(RedisTarget(redis_url, mode))
        try:
            assert await client.ping()
        finally:
            await client.aclose()


def _consumer(client: aioredis.Redis, keys: KeySpace, instance: str, **kw: Any) -> StreamConsumer:
    return StreamConsumer(
        client,
        topic=Topic.MARKET_DATA,
        service=ServiceName.SIGNAL,
        codec=CODEC,
        keys=keys,
        instance=instance,
        block_ms=10,
        **kw,
    )


async def test_take_over__handles_what_a_dead_owner_left_pending_first_and_in_order(
    redis_async: aioredis.Redis, keys: KeySpace
) -> None:
    publisher = Publisher(redis_async, CODEC, keys=keys, service=ServiceName.WS)
    await publisher.publish_many(Topic.MARKET_DATA, [_trade(i, "BTC/USDT") for i in range(6)])
    dead = _consumer(redis_async, keys, "dead")
    await dead.ensure_group()
    await dead.io.read_new(4, None)  # read, never acknowledged: the owner died
    seen: list[float] = []

    async def handle(decoded: Decoded, entry_id: str) -> None:
        seen.append(decoded.message.price)

    heir = _consumer(redis_async, keys, "heir")
    assert await heir.take_over(handle) == 4
    await heir.poll_once(handle)
    assert seen == [100.0, 101.0, 102.0, 103.0, 104.0, 105.0]
    assert (await redis_async.xpending(keys.stream(Topic.MARKET_DATA), keys.group(ServiceName.SIGNAL)))[
        "pending"
    ] == 0


async def test_replay_history__feeds_finished_entries_in_order_but_not_pending_or_undecodable_ones(
    redis_async: aioredis.Redis, keys: KeySpace
) -> None:
    publisher = Publisher(redis_async, CODEC, keys=keys, service=ServiceName.WS)
    await publisher.publish_many(Topic.MARKET_DATA, [_trade(i, "ETH/USDT") for i in range(3)])
    await redis_async.xadd(keys.stream(Topic.MARKET_DATA), {"symbol": '"ETH/USDT"'})  # cannot decode
    await publisher.publish_many(Topic.MARKET_DATA, [_trade(i, "ETH/USDT") for i in range(3, 5)])
    old = _consumer(redis_async, keys, "old")
    await old.ensure_group()

    async def ignore(decoded: Decoded, entry_id: str) -> None:
        return None

    await old.poll_once(ignore)  # handles (and acks) all six
    await old.io.read_new(10, None)  # nothing new
    await publisher.publish_many(Topic.MARKET_DATA, [_trade(5, "ETH/USDT")])
    await old.io.read_new(10, None)  # delivered, not acknowledged: pending, left to takeover
    replayed: list[float] = []
    ids: list[str] = []

    def apply(decoded: Decoded, entry_id: str) -> None:
        replayed.append(decoded.message.price)
        ids.append(entry_id)

    count = await replay_history(_consumer(redis_async, keys, "new"), apply)
    assert replayed == [100.0, 101.0, 102.0, 103.0, 104.0]
    assert count == 5
    finished = [i.decode() for i, f in await redis_async.xrange(keys.stream(Topic.MARKET_DATA))]
    assert ids == [i for n, i in enumerate(finished) if n not in (3, 6)]  # not the bad one, not pending


async def test_consumer__an_acknowledged_entry_delivered_again__raises_group_rewound(
    redis_async: aioredis.Redis, keys: KeySpace
) -> None:
    publisher = Publisher(redis_async, CODEC, keys=keys, service=ServiceName.WS)
    await publisher.publish_many(Topic.MARKET_DATA, [_trade(i) for i in range(3)])
    consumer = _consumer(redis_async, keys, "c", detect_rewind=True)
    await consumer.ensure_group()

    async def ignore(decoded: Decoded, entry_id: str) -> None:
        return None

    assert await consumer.poll_once(ignore) == 3
    # What a fail-over to a lagging replica looks like to the group: its position went back.
    await redis_async.xgroup_setid(keys.stream(Topic.MARKET_DATA), keys.group(ServiceName.SIGNAL), "0")
    with pytest.raises(GroupRewoundError, match="came back"):
        await consumer.poll_once(ignore)


def test_cdb_service__redis_mode_cluster_on_a_standalone_server__exits_naming_redis_mode(
    redis_url: str, keys: KeySpace
) -> None:
    result = cdb("service", "signal", REDIS_URL=redis_url, KEY_PREFIX=keys.prefix, REDIS_MODE="cluster")
    assert result.exit_code == 2
    assert "REDIS_MODE='cluster' is not accepted" in result.output


def test_cdb_service__a_partition_count_other_than_the_running_pipelines__exits_naming_it(
    redis_sync: redis.Redis, redis_url: str, keys: KeySpace
) -> None:
    redis_sync.set(keys.topology(), '{"partitions": 4}')
    result = cdb("service", "risk", REDIS_URL=redis_url, KEY_PREFIX=keys.prefix, TOPIC_PARTITIONS="2")
    assert result.exit_code == 2
    assert "TOPIC_PARTITIONS=2 is not accepted; use one of: 4" in " ".join(result.output.split())
