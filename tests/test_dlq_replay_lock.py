"""One replay of a topic's dead letters at a time: a second operator's ``cdb dlq replay`` of the
same topic is refused while the first runs, and publishes nothing (both would publish every
letter: neither has marked any yet)."""

from __future__ import annotations

import asyncio
import functools
import os
import threading
import time
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis

from cdb.cli import dlq as cdb_dlq
from core.codec import build_codec, encode_field_map
from core.codec.fields import field_map_bytes
from core.redis import dlq_replay
from core.redis.dead_letters import letter_fields
from core.redis.dlq_lock import ReplayInProgressError, ReplayLock, replay_lock
from core.redis.dlq_replay import ReplayStatus, replay_letters
from core.topics import CodecPath, KeySpace, Profile, ServiceName, Topic
from tests.ops_helpers import cdb
from tests.support.replay_lock import overtaken_after_first
from tests.transport_helpers import valid_values

pytestmark = pytest.mark.integration


async def _park_signals(redis_async: aioredis.Redis, keys: KeySpace, n: int) -> None:
    """``n`` valid signals risk parked after its handler kept failing (a bug since fixed)."""
    for i in range(n):
        raw = field_map_bytes(encode_field_map({**valid_values(Topic.SIGNALS, i), "api_version": "v1.0"}))
        error = [{"type": "handler_error", "loc": [], "msg": "a bug since fixed"}]
        fields = letter_fields(
            Topic.SIGNALS, raw, error, service=ServiceName.RISK, path="pydantic", stream_id=f"{i + 1}-0"
        )
        await redis_async.xadd(keys.dlq(Topic.SIGNALS), fields)  # type: ignore[arg-type]


async def test_dlq_replay__a_second_replay_of_the_topic_is_refused_while_one_runs(
    redis_async: aioredis.Redis,
    redis_sync: redis.Redis,
    redis_url: str,
    keys: KeySpace,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await _park_signals(redis_async, keys, 2)
    # The first operator's replay stops just before its first publish, until told to go on.
    publishing, go = threading.Event(), threading.Event()
    publish = dlq_replay.publish_message

    def paused(*args: Any, **kwargs: Any) -> str:
        if not publishing.is_set():
            publishing.set()
            go.wait(30)
        return publish(*args, **kwargs)

    monkeypatch.setattr(dlq_replay, "publish_message", paused)
    codec = build_codec(CodecPath.PYDANTIC, Profile.LENIENT)
    first = asyncio.create_task(asyncio.to_thread(replay_letters, redis_sync, keys, Topic.SIGNALS, codec))
    try:
        assert await asyncio.to_thread(publishing.wait, 30)
        opts = ["--redis-url", redis_url, "--prefix", keys.prefix]
        second = await asyncio.to_thread(cdb, "dlq", "replay", "--topic", "signals", "--all", *opts)
        assert second.exit_code == 1, second.output
        assert "a replay of signals dead letters is already in progress" in second.output
        assert f"pid {os.getpid()}" in second.output  # who holds it
        assert await redis_async.xlen(keys.stream(Topic.SIGNALS)) == 0  # the second wrote nothing
        # A replay that crashed cannot hold the topic forever: the lock expires unless renewed.
        assert await redis_async.pttl(keys.dlq_replay_lock(Topic.SIGNALS)) > 0
        # Another topic is not held up.
        other = await asyncio.to_thread(cdb, "dlq", "replay", "--topic", "orders", "--all", *opts)
        assert other.exit_code == 0, other.output
    finally:
        go.set()
        report = await first
    assert [o.status for o in report.outcomes] == [ReplayStatus.REPLAYED] * 2
    assert await redis_async.xlen(keys.stream(Topic.SIGNALS)) == 2
    assert not await redis_async.exists(keys.dlq_replay_lock(Topic.SIGNALS))  # released at the end


def test_replay_lock__is_renewed_while_held_and_lapses_after_a_crashed_holder(
    redis_sync: redis.Redis, keys: KeySpace
) -> None:
    key = keys.dlq_replay_lock(Topic.ORDERS)
    with replay_lock(redis_sync, keys, Topic.ORDERS, ttl_ms=300) as lock:
        time.sleep(0.9)  # three TTLs: only the renewals keep it
        lock.check()
        assert redis_sync.exists(key)
    assert not redis_sync.exists(key)
    ReplayLock(redis_sync, keys, Topic.ORDERS, ttl_ms=300).take()  # a replay that died holding it
    with pytest.raises(ReplayInProgressError):
        ReplayLock(redis_sync, keys, Topic.ORDERS).take()
    time.sleep(0.5)
    with replay_lock(redis_sync, keys, Topic.ORDERS):  # its TTL passed: free again
        assert redis_sync.exists(key)


async def test_dlq_replay__lost_its_lock_partway__says_how_far_it_got_writes_no_more_and_exits_1(
    redis_async: aioredis.Redis,
    redis_sync: redis.Redis,
    redis_url: str,
    keys: KeySpace,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await _park_signals(redis_async, keys, 3)
    key = keys.dlq_replay_lock(Topic.SIGNALS)
    # A short TTL instead of a 30-s pause: after its first publish, this replay's lock lapses
    # and another replay takes it, as after a pause past the TTL.
    monkeypatch.setattr(cdb_dlq, "replay_letters", functools.partial(replay_letters, lock_ttl_ms=300))
    overtaken, others = overtaken_after_first(dlq_replay.publish_message, redis_sync, keys, Topic.SIGNALS)
    monkeypatch.setattr(dlq_replay, "publish_message", overtaken)
    opts = ["--redis-url", redis_url, "--prefix", keys.prefix]
    result = await asyncio.to_thread(cdb, "dlq", "replay", "--topic", "signals", "--all", *opts)

    assert result.exit_code == 1, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.output
    for part in (
        f"lost its lock to another replay ({others[0].token})",
        "after publishing 1 of 3",
        "nothing more written",
    ):
        assert part in errors[0], errors[0]
    assert "the rest stays parked: run again" in errors[0]
    assert "already in progress" not in result.output
    assert await redis_async.xlen(keys.stream(Topic.SIGNALS)) == 1  # nothing after the loss
    assert await redis_async.xlen(keys.dlq(Topic.SIGNALS)) == 3  # every letter still parked
    assert len(await redis_async.hgetall(keys.dlq_replayed(Topic.SIGNALS))) == 1  # the one it published
    assert await redis_async.get(key) == others[0].token.encode()  # the other's lock left alone
