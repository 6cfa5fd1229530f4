"""Unique instances, consistent settings (issue 16): two execution instances migrate a fresh
database together; a second process with a live instance's name is refused; every instance of
a service must use the same lease TTL."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import psycopg
import pytest
import redis.asyncio as aioredis
from typer.testing import CliRunner

from cdb.cli.main import app
from core.errors import ConfigError
from core.redis.instance_claim import InstanceClaim, claimed
from core.redis.topology import ensure_lease_setting, ensure_topology
from core.topics import KeySpace, ServiceName, Topic
from services.execution.store import PostgresStore
from tests.fence_helpers import procs, wait_owners
from tests.support.servers import ThrowawayRedis

pytestmark = pytest.mark.integration


async def test_execution_store__instances_migrating_a_fresh_database_together_all_start(
    pg_database: str,
) -> None:
    for _ in range(4):
        schema = f"m{uuid.uuid4().hex[:10]}"
        stores = [PostgresStore(pg_database, schema) for _ in range(4)]
        try:
            outcomes = await asyncio.gather(*(s.migrate() for s in stores), return_exceptions=True)
            assert [o for o in outcomes if isinstance(o, BaseException)] == []
            with psycopg.connect(pg_database) as conn:
                versions = conn.execute(
                    f'SELECT version FROM "{schema}".schema_migrations ORDER BY 1'
                ).fetchall()
            assert [v for (v,) in versions] == list(range(1, len(versions) + 1))
            assert len(versions) >= 1
        finally:
            for store in stores:
                await store.close()
            with psycopg.connect(pg_database, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


async def test_instance_claim__a_second_holder_of_a_live_name_is_refused_until_it_is_free(
    redis_async: aioredis.Redis, keys: KeySpace
) -> None:
    first = InstanceClaim(redis_async, keys, ServiceName.SIGNAL, "sig-a", 3_000)
    second = InstanceClaim(redis_async, keys, ServiceName.SIGNAL, "sig-a", 3_000)
    other = InstanceClaim(redis_async, keys, ServiceName.SIGNAL, "sig-b", 3_000)
    await first.take()
    with pytest.raises(ConfigError, match=r"INSTANCE='sig-a' is not accepted.*a live process already runs"):
        await second.take(wait_s=0.3)
    await other.take()  # another name is fine
    assert await first.refresh()
    assert not await second.refresh()  # not its claim: it may not extend (or take) it
    await first.release()
    await second.take()
    assert not await first.refresh()  # the name moved on: the first must stop


async def test_claimed__a_lost_claim_stops_the_process(redis_async: aioredis.Redis, keys: KeySpace) -> None:
    claim = InstanceClaim(redis_async, keys, ServiceName.RISK, "risk-a", 1_000)
    stop = asyncio.Event()
    async with claimed(claim, stop, wait_s=0):
        await redis_async.set(claim.key, "someone-else")  # this one was frozen past the TTL
        async with asyncio.timeout(5):
            await stop.wait()
    assert await redis_async.get(claim.key) == b"someone-else"  # release left the other's claim


async def test_lease_setting__a_different_ttl_than_the_running_instances_is_refused(
    redis_async: aioredis.Redis, keys: KeySpace
) -> None:
    assert await ensure_lease_setting(redis_async, keys, ServiceName.SIGNAL, 2_000) == 2_000
    assert await ensure_lease_setting(redis_async, keys, ServiceName.SIGNAL, 2_000) == 2_000
    with pytest.raises(ConfigError, match=r"PARTITION_LEASE_MS=5000 is not accepted; use one of: 2000"):
        await ensure_lease_setting(redis_async, keys, ServiceName.SIGNAL, 5_000)
    assert await ensure_lease_setting(redis_async, keys, ServiceName.RISK, 5_000) == 5_000  # per service


async def test_cdb_topology_set__records_the_count_and_clears_the_lease_ttls_like_reset(
    redis_async: aioredis.Redis, redis_url: str, keys: KeySpace
) -> None:
    """The lease TTL error tells the operator to run `cdb topology set N` (or reset); set used to
    leave the recorded TTLs, so a restart with another PARTITION_LEASE_MS was still refused."""
    await ensure_topology(redis_async, keys.with_partitions(2))
    await ensure_lease_setting(redis_async, keys, ServiceName.SIGNAL, 2_000)
    await ensure_lease_setting(redis_async, keys, ServiceName.RISK, 2_000)
    where = ["--redis-url", redis_url, "--prefix", keys.prefix]
    shown = CliRunner().invoke(app, ["topology", "show", "--json", *where])
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.output)["partition_lease_ms"] == {"signal": 2_000, "risk": 2_000}
    changed = CliRunner().invoke(app, ["topology", "set", "4", *where])
    assert changed.exit_code == 0, changed.output
    assert "2 -> 4" in changed.output
    assert "lease TTLs cleared (signal 2000, risk 2000 ms)" in changed.output
    # Re-recorded as one piece by the next starts: the new count, and each service's new TTL.
    assert await ensure_topology(redis_async, keys.with_partitions(4)) == 4
    assert await ensure_lease_setting(redis_async, keys, ServiceName.SIGNAL, 5_000) == 5_000
    with pytest.raises(ConfigError, match=r"PARTITION_LEASE_MS=2000 is not accepted; use one of: 5000"):
        await ensure_lease_setting(redis_async, keys, ServiceName.SIGNAL, 2_000)
    again = CliRunner().invoke(app, ["topology", "set", "4", *where])
    assert "lease TTLs cleared (signal 5000 ms)" in again.output
    shown = CliRunner().invoke(app, ["topology", "show", "--json", *where])
    assert json.loads(shown.output) == {"key": keys.topology(), "partitions": 4, "partition_lease_ms": {}}


async def test_duplicate_instance_process__refused_and_a_clean_stop_leaves_the_group(
    throwaway_redis: ThrowawayRedis, tmp_path: Path
) -> None:
    keys = KeySpace(f"dup:{uuid.uuid4().hex[:8]}:", 2)
    client = aioredis.Redis.from_url(throwaway_redis.url)
    try:
        with procs(throwaway_redis.url, keys, tmp_path) as running:
            first = running.start(ServiceName.SIGNAL, "sig-1")
            await wait_owners(client, keys, ServiceName.SIGNAL, lambda o: o == ["sig-1", "sig-1"])
            twin = running.start(ServiceName.SIGNAL, "sig-1")  # same name, second process
            code = await asyncio.to_thread(twin.wait, 30)
            assert code != 0
            assert "INSTANCE='sig-1' is not accepted" in running.log("sig-1")
            running.procs["sig-1"] = first  # both logged to sig-1.log; the first still runs
            assert first.poll() is None
            groups = {
                s: await client.xinfo_consumers(s, keys.group(ServiceName.SIGNAL))
                for s in keys.streams(Topic.MARKET_DATA)
            }
            assert all([c["name"] for c in cs] == [b"sig-1"] for cs in groups.values())
            assert running.stop("sig-1") == 0
        for stream in keys.streams(Topic.MARKET_DATA):
            assert await client.xinfo_consumers(stream, keys.group(ServiceName.SIGNAL)) == []
        assert await client.exists(keys.instance_claim(ServiceName.SIGNAL, "sig-1")) == 0
    finally:
        await client.aclose()
