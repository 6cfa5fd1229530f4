"""Lua scripts by hash (core.redis.scripts): the source crosses the wire only to a server that
lacks the script, and a server that lost it (restart, fail-over) still runs every call once.

Each test has a redis-server of its own: counting EVAL/EVALSHA calls and restarting need it.
"""

from __future__ import annotations

import redis
import redis.asyncio as aioredis

from core.redis.fence import Fence
from core.redis.retry import RetryPolicy, call_async
from core.redis.scripts import LuaScript, is_noscript
from core.settings import ServiceSettings
from core.topics import KeySpace, ServiceName, Topic
from services.execution.once import OncePublisher, Published
from services.runtime import ServiceContext
from tests.samples import valid_message
from tests.support.servers import ThrowawayRedis

# Not idempotent on purpose: a call run twice would show as a count of 2.
COUNTER = LuaScript("return redis.call('INCR', KEYS[1])")


def _calls(sync: redis.Redis, command: str) -> int:
    stats = sync.info("commandstats")
    return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))


async def test_lua_script__new_server__sends_the_source_once_then_only_the_hash(
    throwaway_clients: tuple[redis.Redis, aioredis.Redis],
) -> None:
    sync, client = throwaway_clients
    replies = [await COUNTER.run(client, 1, "n") for _ in range(3)]
    assert replies == [1, 2, 3]  # every call ran exactly once
    assert _calls(sync, "eval") == 1  # the first, after NOSCRIPT
    assert _calls(sync, "evalsha") == 3  # the refused one (nothing ran) and the two after it


async def test_lua_script__server_restarted_without_its_scripts__runs_the_call_once(
    throwaway_redis: ThrowawayRedis,
) -> None:
    client = aioredis.Redis.from_url(throwaway_redis.url)
    try:
        assert await COUNTER.run(client, 1, "n") == 1
        throwaway_redis.restart()  # the data may come back from disk, the script cache never does
        # As the transport calls it: the broken connection is retried, then NOSCRIPT -> EVAL.
        after = await call_async(RetryPolicy(), "count", lambda: COUNTER.run(client, 1, "n"))
        assert after == int(await client.get("n") or 0)  # ran once more, not twice
        sync = redis.Redis.from_url(throwaway_redis.url)
        assert _calls(sync, "eval") == 1  # the restarted server was sent the source
        sync.close()
    finally:
        await client.aclose()


def test_is_noscript__only_the_noscript_refusal() -> None:
    assert is_noscript(redis.exceptions.NoScriptError("No matching script"))
    assert is_noscript(redis.exceptions.ResponseError("NOSCRIPT No matching script. Please use EVAL."))
    assert not is_noscript(redis.exceptions.ResponseError("WRONGTYPE Operation against a key"))
    assert not is_noscript([b"1-0", 1])


def test_lua_script__commands__hash_or_source_with_the_same_arguments() -> None:
    assert COUNTER.command(1, "n") == ["EVALSHA", COUNTER.sha, "1", "n"]
    assert COUNTER.source_command(1, "n") == ["EVAL", COUNTER.source, "1", "n"]
    assert len(COUNTER.sha) == 40


async def test_once_publisher__server_without_the_script__publishes_once_by_hash_after(
    throwaway_clients: tuple[redis.Redis, aioredis.Redis],
) -> None:
    sync, client = throwaway_clients
    keys = KeySpace("scripts:")
    overrides = {"key_prefix": keys.prefix}
    settings = ServiceSettings.load(ServiceName.EXECUTION, environ={}, overrides=overrides)
    ctx = ServiceContext.create(ServiceName.EXECUTION, settings, client)
    once = OncePublisher(ctx.publisher, Topic.ORDER_RESULTS)
    result = ctx.codec.build(Topic.ORDER_RESULTS, valid_message(Topic.ORDER_RESULTS))
    first = await once.publish("ord-1", result)
    again = await once.publish("ord-1", result)

    assert (first.new, again.new) == (True, False)
    assert again.stream_id == first.stream_id
    assert await client.xlen(keys.stream(Topic.ORDER_RESULTS)) == 1
    assert (_calls(sync, "eval"), _calls(sync, "evalsha")) == (1, 2)


async def test_lua_script__many_calls_on_a_server_without_it__one_round_trip_then_each_runs_once(
    throwaway_clients: tuple[redis.Redis, aioredis.Redis],
) -> None:
    sync, client = throwaway_clients
    replies = await COUNTER.send_many(client, [(1, ["n"]), (1, ["n"]), (1, ["m"])], then=[["PING"]])
    assert replies == [1, 2, 1, b"PONG"]  # each call ran once, in order; PING's reply last
    assert (_calls(sync, "evalsha"), _calls(sync, "eval")) == (3, 3)  # all refused, all resent
    assert await COUNTER.send_many(client, [(1, ["n"]), (1, ["m"])]) == [3, 2]
    assert (_calls(sync, "evalsha"), _calls(sync, "eval")) == (5, 3)  # by hash from now on


async def test_once_publisher__a_batch_on_a_server_without_the_script__each_result_published_once(
    throwaway_clients: tuple[redis.Redis, aioredis.Redis],
) -> None:
    client = throwaway_clients[1]
    keys = KeySpace("scripts:")
    settings = ServiceSettings.load(ServiceName.EXECUTION, environ={}, overrides={"key_prefix": keys.prefix})
    ctx = ServiceContext.create(ServiceName.EXECUTION, settings, client)
    once = OncePublisher(ctx.publisher, Topic.ORDER_RESULTS)
    values = valid_message(Topic.ORDER_RESULTS)
    batch = [
        (f"ord-{i}", ctx.codec.build(Topic.ORDER_RESULTS, {**values, "order_id": f"ord-{i}"}))
        for i in range(3)
    ]
    first = await once.publish_many(batch)
    again = await once.publish_many([batch[1], batch[1], batch[2]])

    assert all(isinstance(p, Published) for p in [*first, *again])
    ids = [p.stream_id for p in first if isinstance(p, Published)]
    assert [p.new for p in first if isinstance(p, Published)] == [True, True, True]
    assert len(set(ids)) == 3
    assert [(p.new, p.stream_id) for p in again if isinstance(p, Published)] == [
        (False, ids[1]),
        (False, ids[1]),
        (False, ids[2]),
    ]
    assert await client.xlen(keys.stream(Topic.ORDER_RESULTS)) == 3


async def test_fenced_wait_and_read__on_a_server_without_the_fence_script__takes_each_entry_once(
    throwaway_clients: tuple[redis.Redis, aioredis.Redis],
) -> None:
    sync, client = throwaway_clients
    sync.set("lease", "me")
    sync.xgroup_create("s", "g", id="0", mkstream=True)
    first = sync.xadd("s", {"n": "1"})
    fence = Fence(client, lease="lease", stream="s", group="g", owner="me")
    # The wait ends at once (an entry after 0-0); the read behind it is refused NOSCRIPT, so
    # nothing of it ran, and is sent again alone with the source.
    read = await fence.wait_and_read("c", 10, b"0-0", 1_000)
    assert [entry_id for entry_id, _ in read.entries] == [first]
    assert (_calls(sync, "evalsha"), _calls(sync, "eval")) == (1, 1)
    second = sync.xadd("s", {"n": "2"})
    read = await fence.wait_and_read("c", 10, first, 1_000, taken=first)
    assert [entry_id for entry_id, _ in read.entries] == [second]  # by hash from now on
    assert (_calls(sync, "evalsha"), _calls(sync, "eval")) == (2, 1)
    assert [row["message_id"] for row in sync.xpending_range("s", "g", "-", "+", 10)] == [first, second]
