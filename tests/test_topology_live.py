"""``cdb topology set / reset`` refuse while any instance of the pipeline reports live state.

Running instances keep the partition count they started with: a ``set 2`` under four live
instances on 1 made ``cdb status`` say "2 partition(s)" while everything ran on 1, and the
next restart of any of them was refused (``TOPIC_PARTITIONS=1 is not accepted``), a crash
loop in a container. Live is what ``cdb dlq catch-up`` calls live: a live-state document
that is not the last report of a clean stop (a stale one may be a hung process).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator

import pytest
import redis
import redis.asyncio as aioredis
from typer.testing import Result

from core.redis.acl import OPERATOR
from core.redis.topology import ensure_lease_setting, ensure_topology, read_partitions
from core.status import LiveState, StatusReporter
from core.topics import KeySpace, ServiceName
from core.utils.clock import now_ms
from tests.ops_helpers import cdb, report_state, reporting, service_settings
from tests.test_redis_acl_live import temporary_acl_users

pytestmark = pytest.mark.integration


def _where(redis_url: str, keys: KeySpace) -> list[str]:
    return ["--redis-url", redis_url, "--prefix", keys.prefix]


async def _topology(url: str, keys: KeySpace, *args: str) -> Result:
    return await asyncio.to_thread(cdb, "topology", *args, *_where(url, keys))


@contextlib.asynccontextmanager
async def _pipeline(redis: aioredis.Redis, keys: KeySpace) -> AsyncIterator[list[str]]:
    """One reporting instance of every service, as `docker compose up` runs; their names."""
    names = [f"{s.value}-1" for s in ServiceName]
    async with contextlib.AsyncExitStack() as stack:
        for service, name in zip(ServiceName, names, strict=True):
            await stack.enter_async_context(reporting(redis, service_settings(service, keys, name)))
        yield [f"{s.value}/{n}" for s, n in zip(ServiceName, names, strict=True)]


async def _stored_state(redis: aioredis.Redis, keys: KeySpace, state: LiveState) -> None:
    await redis.set(keys.status(ServiceName(state.service), state.instance), state.to_json(), px=20_000)


async def test_topology_set__refused_while_instances_are_live_naming_them_and_nothing_changes(
    redis_async: aioredis.Redis, redis_url: str, keys: KeySpace
) -> None:
    await ensure_topology(redis_async, keys)  # the running pipeline's 1
    await ensure_lease_setting(redis_async, keys, ServiceName.SIGNAL, 2_000)
    async with _pipeline(redis_async, keys) as live:
        refused = await _topology(redis_url, keys, "set", "2")
        reset = await _topology(redis_url, keys, "reset")
    for result in (refused, reset):
        assert result.exit_code == 2, result.output
        [line] = result.output.strip().splitlines()
        assert line.startswith("error: 4 instance(s) of the pipeline report live state")
        assert all(f"{name} (live)" in line for name in live), line
        assert "stop every instance first" in line
        assert "nothing changed" in line
    assert "cdb topology set again" in refused.output
    assert "cdb topology reset again" in reset.output
    assert await read_partitions(redis_async, keys) == 1
    assert await ensure_lease_setting(redis_async, keys, ServiceName.SIGNAL, 2_000) == 2_000  # kept


async def test_topology_set__a_stale_instance_or_comparator_still_counts_as_running(
    redis_async: aioredis.Redis, redis_url: str, keys: KeySpace
) -> None:
    """A crashed or hung instance keeps its document (stale) for ~20 s: it may still be running."""
    await ensure_topology(redis_async, keys)
    ctx = await report_state(redis_async, service_settings(ServiceName.RISK, keys, "risk-hung"))
    hung = ctx.live_state()
    hung.reported_ms = now_ms() - 60_000
    await _stored_state(redis_async, keys, hung)
    refused = await _topology(redis_url, keys, "set", "2")
    assert refused.exit_code == 2, refused.output
    assert "risk/risk-hung (stale)" in refused.output

    await redis_async.delete(keys.status(ServiceName.RISK, "risk-hung"))
    comparator = (
        await report_state(redis_async, service_settings(ServiceName.SIGNAL, keys, "cmp"))
    ).live_state()
    comparator.role, comparator.reported_ms = "comparator", now_ms()
    await _stored_state(redis_async, keys, comparator)
    refused = await _topology(redis_url, keys, "set", "2")
    assert refused.exit_code == 2, refused.output
    assert "signal/cmp (live)" in refused.output  # it reads the partition streams too
    assert await read_partitions(redis_async, keys) == 1


async def test_topology_set__goes_ahead_once_every_instance_stopped_cleanly(
    redis_async: aioredis.Redis, redis_url: str, keys: KeySpace
) -> None:
    await ensure_topology(redis_async, keys)
    for service in ServiceName:
        ctx = await report_state(redis_async, service_settings(service, keys, f"{service.value}-1"))
        await StatusReporter(redis_async, ctx.keys, ctx.live_state).report_stopped()  # docker stop
    changed = await _topology(redis_url, keys, "set", "2")
    assert changed.exit_code == 0, changed.output
    assert f"{keys.topology()}: 1 -> 2" in changed.output
    assert await read_partitions(redis_async, keys) == 2
    reset = await _topology(redis_url, keys, "reset")
    assert reset.exit_code == 0, reset.output
    assert await read_partitions(redis_async, keys) is None


async def test_topology_set__as_cdb_operator_sees_the_live_instances_and_refuses(
    redis_async: aioredis.Redis, redis_sync: redis.Redis, redis_url: str, keys: KeySpace
) -> None:
    """The documented login (REDIS_URL as cdb-operator) may SCAN and GET the live-state documents."""
    await ensure_topology(redis_async, keys)
    with temporary_acl_users(redis_sync, keys, redis_url) as users:
        async with reporting(redis_async, service_settings(ServiceName.EXECUTION, keys, "exec-1")):
            refused = await _topology(users.urls[OPERATOR], keys, "set", "2")
        assert refused.exit_code == 2, refused.output
        assert "execution/exec-1 (live)" in refused.output
        await redis_async.delete(keys.status(ServiceName.EXECUTION, "exec-1"))  # gone (as after expiry)
        changed = await _topology(users.urls[OPERATOR], keys, "set", "2")
    assert changed.exit_code == 0, changed.output
    assert json.loads(await redis_async.get(keys.topology()) or b"{}") == {"partitions": 2}
