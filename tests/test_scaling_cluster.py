"""A real 3-primary Redis Cluster (three cluster-enabled redis-servers joined with redis-cli
--cluster create): the partitioned pipeline trades exactly like one server, and the operator
tools work against it (issue 10)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from redis.asyncio.cluster import RedisCluster

from core.codec import build_codec
from core.codec.fields import field_map_bytes
from core.errors import ConfigError
from core.logging import configure_logging
from core.redis import DeadLetters, Publisher
from core.redis.connection import open_target
from core.redis.modes import AsyncClient, RedisTarget
from core.status import read_live_states
from core.topics import CodecPath, KeySpace, RedisMode, ServiceName, Topic
from harness.local_topologies import LocalRedisCluster
from services.ws.replay import BUNDLED_TRADES_SMALL
from tests.ops_helpers import cdb, cdb_json, live_service, service_settings
from tests.scaling_helpers import NO_EXPOSURE_LIMIT, assert_same_trades, clean, run

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CODEC = build_codec(CodecPath.PYDANTIC)


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalRedisCluster]:
    """Three primaries on free ports, shared by this module's tests (a few seconds to start)."""
    nodes = LocalRedisCluster(3, durable=False).start()
    yield nodes
    nodes.close()


@pytest.fixture
async def cluster_keys(cluster: LocalRedisCluster) -> AsyncIterator[KeySpace]:
    """A fresh prefix on the cluster, 4 partitions; every key under it deleted afterwards."""
    keys = KeySpace(f"cdbtest:{uuid.uuid4().hex[:10]}:", 4)
    yield keys
    client = await open_target(RedisTarget(cluster.url))
    try:
        await clean(client, keys)
    finally:
        await client.aclose()


@pytest.mark.parametrize("pydantic", [False, True], ids=["all-legacy", "all-pydantic"])
async def test_cluster__4_partitions_trade_like_the_single_server_all_legacy_baseline(
    cluster: LocalRedisCluster, redis_url: str, pydantic: bool
) -> None:
    baseline = await run(RedisTarget(redis_url), partitions=1, environ=NO_EXPOSURE_LIMIT)
    spread = await run(
        RedisTarget(cluster.url, RedisMode.CLUSTER),
        partitions=4,
        pydantic=pydantic,
        environ=NO_EXPOSURE_LIMIT,
    )
    assert len(baseline.order_results) > 5, "trades_small must produce fills to compare"
    assert_same_trades(spread, baseline)
    assert spread.stream_lengths == baseline.stream_lengths


async def test_cluster__partition_streams_live_on_several_primaries(cluster: LocalRedisCluster) -> None:
    client = await open_target(RedisTarget(cluster.url))
    try:
        assert isinstance(client, RedisCluster)
        keys = KeySpace("p:", 4)
        nodes = {client.get_node_from_key(s).name for t in Topic for s in keys.streams(t)}
        assert len(nodes) == 3
    finally:
        await client.aclose()


async def test_cluster__redis_mode_standalone_against_a_cluster_node__is_refused(
    cluster: LocalRedisCluster,
) -> None:
    with pytest.raises(ConfigError, match="REDIS_MODE='standalone'") as info:
        await open_target(RedisTarget(cluster.url, RedisMode.STANDALONE))
    assert "cluster" in info.value.accepted


async def test_cluster__cdb_status_shows_the_instance_and_the_partitions_it_owns(
    cluster: LocalRedisCluster, cluster_keys: KeySpace
) -> None:
    client = await open_target(RedisTarget(cluster.url))
    settings = service_settings(
        ServiceName.SIGNAL, cluster_keys, "sig-1", topic_partitions=4, redis_url=cluster.url
    )
    try:
        async with live_service(client, settings):
            await _owning(client, cluster_keys, ServiceName.SIGNAL, "sig-1", 4)
            out = await asyncio.to_thread(
                cdb_json,
                "status",
                "--redis-url",
                cluster.url,
                "--redis-mode",
                "cluster",
                "--prefix",
                cluster_keys.prefix,
            )
    finally:
        await client.aclose()
    assert out["partitions"] == 4
    (row,) = out["instances"]
    assert (row["service"], row["instance"], row["partitions"]) == ("signal", "sig-1", 4)
    assert row["owned"] == [0, 1, 2, 3]


async def _owning(
    client: AsyncClient, keys: KeySpace, service: ServiceName, instance: str, count: int
) -> None:
    async with asyncio.timeout(10):
        while True:
            states = await read_live_states(client, keys)
            if any(s.instance == instance and len(s.owned) == count for s in states):
                return
            await asyncio.sleep(0.05)


async def test_cluster__cutover_check_scans_every_partition_stream(
    cluster: LocalRedisCluster, cluster_keys: KeySpace
) -> None:
    client = await open_target(RedisTarget(cluster.url))
    try:
        await client.set(cluster_keys.topology(), '{"partitions": 4}')
        legacy = build_codec(CodecPath.LEGACY)
        trades = [
            legacy.build(
                Topic.MARKET_DATA,
                {
                    "symbol": s,
                    "price": 1.0 + i,
                    "volume": 1.0,
                    "side": "BUY",
                    "venue": "mexc",
                    "timestamp": 1_767_225_600_000 + i,
                },
            )
            for i, s in enumerate(["BTC/USDT", "ETH/USDT", "DOGE/USDT", "XRP/USDT"] * 3)
        ]
        await Publisher(client, legacy, keys=cluster_keys, service=ServiceName.WS).publish_many(
            Topic.MARKET_DATA, trades
        )
    finally:
        await client.aclose()
    out = await asyncio.to_thread(
        cdb_json, "cutover", "check", "--redis-url", cluster.url, "--prefix", cluster_keys.prefix, expect=1
    )
    (streams,) = [f for f in out["findings"] if f["name"] == "streams"]
    (market,) = [d for d in streams["data"] if d["topic"] == "market_data"]
    assert (market["scanned"], market["lacking"]) == (12, 12)  # legacy trades lack api_version


async def test_cluster__cdb_dlq_lists_and_replays_into_the_symbols_partition(
    cluster: LocalRedisCluster, cluster_keys: KeySpace
) -> None:
    client = await open_target(RedisTarget(cluster.url))
    trade = CODEC.build(
        Topic.MARKET_DATA,
        {
            "symbol": "DOGE/USDT",
            "price": 0.1,
            "volume": 5.0,
            "side": "SELL",
            "venue": "mexc",
            "timestamp": 1_767_225_600_000,
        },
    )
    raw = field_map_bytes(CODEC.to_fields(Topic.MARKET_DATA, trade))
    try:
        await client.set(cluster_keys.topology(), '{"partitions": 4}')
        await DeadLetters(client, cluster_keys).park(
            Topic.MARKET_DATA,
            raw,
            [{"type": "handler_error", "loc": [], "msg": "venue was down"}],
            service=ServiceName.SIGNAL,
            path="pydantic",
            stream_id="1767225600000-0",
        )
        listed = await asyncio.to_thread(
            cdb_json, "dlq", "list", "--redis-url", cluster.url, "--prefix", cluster_keys.prefix
        )
        assert listed["market_data"]["total"] == 1
        result = await asyncio.to_thread(
            cdb,
            "dlq",
            "replay",
            "--topic",
            "market_data",
            "--all",
            "--redis-url",
            cluster.url,
            "--prefix",
            cluster_keys.prefix,
        )
        assert result.exit_code == 0, result.output
        partition = cluster_keys.partition("DOGE/USDT")
        assert await client.xlen(cluster_keys.stream(Topic.MARKET_DATA, partition)) == 1
    finally:
        await client.aclose()


def test_cluster__cdb_matrix_runs_a_partitioned_mix_against_the_cluster(cluster: LocalRedisCluster) -> None:
    try:
        _matrix_on(cluster)
    finally:
        configure_logging()  # cdb matrix logged to CliRunner's stream, which is closed now


def _matrix_on(cluster: LocalRedisCluster) -> None:
    result = cdb(
        "matrix",
        "--mix",
        "PPPP",
        "--data",
        str(BUNDLED_TRADES_SMALL),
        "--redis-url",
        cluster.url,
        "--redis-mode",
        "cluster",
        "--json",
        TOPIC_PARTITIONS="4",
    )
    assert result.exit_code == 0, result.output
    assert '"rows_failed": 0' in result.stdout
