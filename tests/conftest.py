"""Shared fixtures: real Redis and PostgreSQL, isolated per test, and the CI skip rule."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import fakeredis
import psycopg
import pytest
import redis
import redis.asyncio as aioredis
from redis.asyncio.connection import AbstractConnection

from cdb.plugins import install_plugins
from core.topics import KeySpace
from core.utils.clock import FrozenClock, set_clock
from tests.support.servers import PG_ADMIN_URL, REDIS_URL, ThrowawayRedis

install_plugins()  # as the application does at start-up: the codec registry knows every mode

pytest_plugins = (
    "harness.testing",  # the mixed_pipeline fixture (docs/matrix.md)
    "tests.cluster_fixtures",  # cluster, cluster_keys: a throwaway Redis Cluster
)

FROZEN_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """In CI a skipped test is a failure: an integration test that did not run proved nothing."""
    if os.environ.get("CI", "").lower() not in ("1", "true", "yes"):
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter else []
    if skipped:
        reporter.write_line(f"CI=true: {len(skipped)} test(s) skipped; failing the run", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture
def frozen_clock() -> Iterator[FrozenClock]:
    """The process clock frozen at 2026-01-01T00:00:00Z for the test."""
    clock = FrozenClock(FROZEN_MS)
    previous = set_clock(clock)
    yield clock
    set_clock(previous)


@pytest.fixture(scope="session")
def redis_url() -> str:
    """URL of the real shared Redis server (database 13); fails loudly if it does not answer."""
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.fail(f"the real Redis at {REDIS_URL} does not answer ({exc}); run scripts/test.sh")
    finally:
        client.close()
    return REDIS_URL


@pytest.fixture
def keys(redis_url: str) -> Iterator[KeySpace]:
    """A fresh key prefix on the real Redis; every key under it is deleted afterwards."""
    space = KeySpace(prefix=f"cdbtest:{uuid.uuid4().hex[:10]}:")
    yield space
    client = redis.Redis.from_url(redis_url)
    try:
        batch = list(client.scan_iter(match=space.all_keys_pattern(), count=1000))
        if batch:
            client.unlink(*batch)
    finally:
        client.close()


@pytest.fixture
def redis_sync(redis_url: str) -> Iterator[redis.Redis]:
    """A sync client of the real Redis server."""
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture(params=["redis", "fakeredis"])
async def any_redis(request: pytest.FixtureRequest, redis_url: str) -> AsyncIterator[aioredis.Redis]:
    """An asyncio client of the real Redis server, then of an in-memory fakeredis (what ``cdb run``
    uses without REDIS_URL): one transport suite, two servers, as FastStream runs its broker tests."""
    if request.param == "fakeredis":
        client: aioredis.Redis = fakeredis.FakeAsyncRedis()
    else:
        client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
async def redis_async(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    """An asyncio client of the real Redis server."""
    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """URL of a PostgreSQL database created for this test session and dropped after it."""
    name = f"cdb_test_{uuid.uuid4().hex[:10]}"
    try:
        admin = psycopg.connect(PG_ADMIN_URL, autocommit=True)
    except psycopg.OperationalError as exc:
        pytest.fail(f"the real PostgreSQL at {PG_ADMIN_URL} does not answer ({exc}); run scripts/test.sh")
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    yield f"{base}/{name}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def throwaway_redis() -> Iterator[ThrowawayRedis]:
    """A redis-server process of the test's own on a free port (restartable)."""
    server = ThrowawayRedis().start()
    yield server
    server.close()


@pytest.fixture
async def throwaway_clients(
    throwaway_redis: ThrowawayRedis,
) -> AsyncIterator[tuple[redis.Redis, aioredis.Redis]]:
    """A blocking and an asyncio client of the test's own redis-server (``throwaway_redis``)."""
    sync = redis.Redis.from_url(throwaway_redis.url)
    client = aioredis.Redis.from_url(throwaway_redis.url)
    yield sync, client
    await client.aclose()
    sync.close()


@pytest.fixture
def writes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many times a connection wrote to Redis (one write, then its replies: a round trip);
    redis-py's commands and the pipelined sends both go through ``send_packed_command``."""
    count = [0]
    original = AbstractConnection.send_packed_command

    async def counted(self: AbstractConnection, command: Any, check_health: bool = True) -> None:
        count[0] += 1
        await original(self, command, check_health)

    monkeypatch.setattr(AbstractConnection, "send_packed_command", counted)
    return count
