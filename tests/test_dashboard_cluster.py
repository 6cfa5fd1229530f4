"""``cdb dashboard`` reads a Redis Cluster as it reads one server (the same state ``cdb status`` reads)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

from cdb.cli.dashboard_app import Sampler
from core.errors import ContractError
from core.redis import DeadLetters
from core.redis.connection import open_target
from core.redis.modes import RedisTarget
from core.topics import KeySpace, RedisMode, ServiceName, Topic
from harness.local_topologies import LocalRedisCluster
from tests.ops_helpers import live_service, service_settings
from tests.scaling_helpers import clean

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalRedisCluster]:
    """Three primaries on free ports (a few seconds to start)."""
    nodes = LocalRedisCluster(3, durable=False).start()
    yield nodes
    nodes.close()


@pytest.fixture
async def cluster_keys(cluster: LocalRedisCluster) -> AsyncIterator[KeySpace]:
    """A fresh prefix on the cluster, 4 partitions; its keys deleted afterwards."""
    keys = KeySpace(f"cdbtest:{uuid.uuid4().hex[:10]}:", 4)
    yield keys
    client = await open_target(RedisTarget(cluster.url))
    try:
        await clean(client, keys)
    finally:
        await client.aclose()


async def test_dashboard_sampler__on_a_cluster_shows_instances_dead_letters_and_the_verdict(
    cluster: LocalRedisCluster, cluster_keys: KeySpace
) -> None:
    client = await open_target(RedisTarget(cluster.url))
    settings = service_settings(
        ServiceName.SIGNAL, cluster_keys, "sig-1", topic_partitions=4, redis_url=cluster.url
    )
    error = ContractError(topic="market_data", path="pydantic", profile="lenient", raw=b"{}", errors=[])
    sampler = Sampler(RedisTarget(cluster.url, mode=RedisMode.CLUSTER), cluster_keys.prefix, interval_s=0.1)
    stop = asyncio.Event()
    try:
        await DeadLetters(client, cluster_keys).park(
            Topic.MARKET_DATA, b"{}", error, service=ServiceName.SIGNAL, path="pydantic"
        )
        async with live_service(client, settings):
            task = asyncio.create_task(sampler.run(stop))
            async with asyncio.timeout(20):
                while sampler.snapshot is None or not sampler.snapshot.states or sampler.verdict is None:
                    assert sampler.error is None, sampler.error
                    await asyncio.sleep(0.05)
            state = sampler.state()
            stop.set()
            await task
    finally:
        await client.aclose()
    [row] = state["instances"]
    assert (row["service"], row["instance"], row["path"]) == ("signal", "sig-1", "legacy")
    assert state["partitions"] == 4
    assert state["dead_letters"]["market_data"]["entries"] == 1
    assert state["verdict"]["verdict"] == "NO-GO"  # ws, risk and execution are not running
    assert {f["name"] for f in state["verdict"]["findings"]} >= {"instances", "dead_letters"}
