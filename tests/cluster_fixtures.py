"""The Redis Cluster fixtures of the cluster test modules: three throwaway primaries per
module that asks for ``cluster`` and a fresh, cleaned key prefix per test (``cluster_keys``).
Registered for every test by tests/conftest.py (``pytest_plugins``); nothing starts unless asked."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

from core.redis.connection import open_target
from core.redis.modes import RedisTarget
from core.topics import KeySpace
from harness.local_topologies import LocalRedisCluster

__all__ = ["cluster", "cluster_keys"]


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalRedisCluster]:
    """Three primaries on free ports, shared by the module's tests (a few seconds to start)."""
    nodes = LocalRedisCluster(3, durable=False).start()
    yield nodes
    nodes.close()


@pytest.fixture
async def cluster_keys(cluster: LocalRedisCluster) -> AsyncIterator[KeySpace]:
    """A fresh prefix on the cluster, 4 partitions; every key under it deleted afterwards."""
    keys = KeySpace(f"cdbtest:{uuid.uuid4().hex[:10]}:", 4)
    yield keys
    from tests.scaling_helpers import clean  # the pipeline runner: imported only where used

    client = await open_target(RedisTarget(cluster.url))
    try:
        await clean(client, keys)
    finally:
        await client.aclose()
