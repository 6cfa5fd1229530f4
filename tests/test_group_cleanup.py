"""Dead consumers leave their consumer groups instead of piling up (real Redis).

Each instance is a consumer named after itself (``<hostname>-<pid>`` by default), so
restarts used to add a consumer per restart to every group it read, forever. Now a
cleanly stopped instance deletes its own consumer (when nothing is pending), and a
running one removes consumers idle past ``DEAD_CONSUMER_IDLE_MS`` with nothing pending.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest
import redis.asyncio as aioredis

from core.codec import encode_field_map
from core.redis.group_cleanup import GroupJanitor
from core.topics import KeySpace, ServiceName, Topic
from services.runtime import ServiceContext, run_consuming_service
from services.signal.service import SignalService
from tests.ops_helpers import service_settings
from tests.transport_helpers import valid_values

pytestmark = pytest.mark.integration

TOPIC = Topic.MARKET_DATA


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def _consumers(redis: aioredis.Redis, stream: str, group: str) -> dict[str, dict[str, Any]]:
    try:
        infos = await redis.xinfo_consumers(stream, group)
    except aioredis.ResponseError:
        return {}
    return {_text(c["name"]): c for c in infos}


async def _read(redis: aioredis.Redis, stream: str, group: str, consumer: str, *, ack: bool) -> None:
    reply = await redis.xreadgroup(group, consumer, {stream: ">"}, count=1)
    ids = [entry_id for _, entries in reply for entry_id, _ in entries]
    assert ids, "nothing was delivered"
    if ack:
        await redis.xack(stream, group, *ids)


async def _until_idle(redis: aioredis.Redis, stream: str, group: str, names: list[str], idle_ms: int) -> None:
    async with asyncio.timeout(10):
        while True:
            found = await _consumers(redis, stream, group)
            if all(int(found[n]["idle"]) >= idle_ms for n in names):
                return
            await asyncio.sleep(0.05)


async def test_group_janitor__idle_consumers_without_pending__removed_others_kept(
    redis_async: aioredis.Redis, keys: KeySpace
) -> None:
    stream, group = keys.stream(TOPIC), keys.group(ServiceName.SIGNAL)
    await redis_async.xgroup_create(stream, group, id="0", mkstream=True)
    for i in range(5):
        await redis_async.xadd(stream, {"n": str(i)})
    await _read(redis_async, stream, group, "dead-a", ack=True)
    await _read(redis_async, stream, group, "dead-b", ack=True)
    await _read(redis_async, stream, group, "dead-pending", ack=False)  # died holding an entry
    await _read(redis_async, stream, group, "me", ack=True)
    await _until_idle(redis_async, stream, group, ["dead-a", "dead-b", "dead-pending", "me"], 300)
    await _read(redis_async, stream, group, "live", ack=True)  # read just now: not idle

    janitor = GroupJanitor(redis_async, [stream], group, "me", idle_ms=300)
    removed = await janitor.sweep()

    assert sorted(removed) == [f"{stream}/dead-a", f"{stream}/dead-b"]
    assert sorted(await _consumers(redis_async, stream, group)) == ["dead-pending", "live", "me"]
    assert (await redis_async.xpending(stream, group))["pending"] == 1  # its entry is still claimable


async def test_group_janitor__leave__own_consumer_removed_only_without_pending(
    redis_async: aioredis.Redis, keys: KeySpace
) -> None:
    done, busy = keys.stream(TOPIC, 0), keys.stream(Topic.SIGNALS, 0)
    group = keys.group(ServiceName.SIGNAL)
    for stream in (done, busy):
        await redis_async.xgroup_create(stream, group, id="0", mkstream=True)
        await redis_async.xadd(stream, {"n": "1"})
    await _read(redis_async, done, group, "me", ack=True)
    await _read(redis_async, busy, group, "me", ack=False)
    missing = keys.stream(Topic.ORDERS)  # no group there: nothing to leave, no error

    left = await GroupJanitor(redis_async, [done, busy, missing], group, "me", idle_ms=0).leave()

    assert left == [done]
    assert await _consumers(redis_async, done, group) == {}
    assert list(await _consumers(redis_async, busy, group)) == ["me"]


async def test_group_janitor__idle_ms_zero__sweep_disabled(
    redis_async: aioredis.Redis, keys: KeySpace
) -> None:
    stream, group = keys.stream(TOPIC), keys.group(ServiceName.SIGNAL)
    await redis_async.xgroup_create(stream, group, id="0", mkstream=True)
    await redis_async.xadd(stream, {"n": "1"})
    await _read(redis_async, stream, group, "old", ack=True)
    assert await GroupJanitor(redis_async, [stream], group, "me", idle_ms=0).sweep() == []
    assert list(await _consumers(redis_async, stream, group)) == ["old"]


async def _instance(
    redis: aioredis.Redis, keys: KeySpace, name: str, i: int, **flags: Any
) -> tuple[asyncio.Task[Any], asyncio.Event]:
    """A real signal instance that has handled one new trade (its consumer exists in the group)."""
    settings = service_settings(ServiceName.SIGNAL, keys, name).model_copy(update=flags)
    ctx = ServiceContext.create(ServiceName.SIGNAL, settings, redis)
    stop = asyncio.Event()
    task = asyncio.create_task(run_consuming_service(SignalService(ctx), ctx, stop))
    stream, group = keys.stream(TOPIC), keys.group(ServiceName.SIGNAL)
    await redis.xadd(stream, encode_field_map({**valid_values(TOPIC, i), "api_version": "v1.0"}))  # type: ignore[arg-type]
    async with asyncio.timeout(20):
        while True:
            groups = {_text(g["name"]): g for g in await redis.xinfo_groups(stream)}
            state = groups.get(group)
            mine = name in await _consumers(redis, stream, group)
            if mine and state and state["pending"] == 0 and state["lag"] == 0:
                return task, stop
            await asyncio.sleep(0.02)


async def test_service_restarts__clean_stops__leave_no_consumer_behind(
    redis_async: aioredis.Redis, keys: KeySpace
) -> None:
    stream, group = keys.stream(TOPIC), keys.group(ServiceName.SIGNAL)
    for i in range(3):
        task, stop = await _instance(redis_async, keys, f"sig-restart-{i}", i)
        assert f"sig-restart-{i}" in await _consumers(redis_async, stream, group)
        stop.set()
        await task
    assert await _consumers(redis_async, stream, group) == {}


async def test_service_crashes__consumers_pile_up__then_a_running_instance_removes_them(
    redis_async: aioredis.Redis, keys: KeySpace
) -> None:
    stream, group = keys.stream(TOPIC), keys.group(ServiceName.SIGNAL)
    crashed = [f"sig-crashed-{i}" for i in range(3)]
    for i, name in enumerate(crashed):
        task, _ = await _instance(redis_async, keys, name, i)
        task.cancel()  # a crash: no clean stop, its consumer stays (what used to pile up)
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert sorted(await _consumers(redis_async, stream, group)) == crashed
    await _until_idle(redis_async, stream, group, crashed, 500)

    # DEAD_CONSUMER_IDLE_MS is >= 60 s in production; model_copy skips validation for the test.
    task, stop = await _instance(redis_async, keys, "sig-live", 10, dead_consumer_idle_ms=500)
    async with asyncio.timeout(20):
        while sorted(await _consumers(redis_async, stream, group)) != ["sig-live"]:
            await asyncio.sleep(0.05)
    stop.set()
    await task
    assert await _consumers(redis_async, stream, group) == {}
