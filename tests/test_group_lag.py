"""A group's backlog as operators see it (`cdb status`, the lag gauge, the benchmark's drain
wait): exact once the group has read everything, even after the stream was trimmed past it.

Redis up to 7.4 keeps XINFO GROUPS' ``lag`` too high after trimming removed entries the group
had not read (redis/redis#13957): the group catches up and Redis still says it is behind, by
the entries it lost, for good. Here the real server is asked, whatever its version."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from core.redis import Publisher
from core.redis.consumer_io import group_backlog, undelivered
from core.topics import KeySpace, ServiceName, Topic
from tests.transport_helpers import CODECS, Collector, make_messages, orders_consumer

pytestmark = pytest.mark.integration

GROUP_OF = ServiceName.EXECUTION
CODEC = CODECS["pydantic-strict"]


async def _row(redis: aioredis.Redis, stream: str, group: str) -> dict[str, object]:
    return next(g for g in await redis.xinfo_groups(stream) if g["name"].decode() == group)


async def _trimmed_past_the_group(redis: aioredis.Redis, keys: KeySpace) -> tuple[str, str]:
    """A group that read 2 entries, then 10 more added and the stream trimmed to 3: 7 were
    never delivered to it."""
    stream, group = keys.stream(Topic.ORDERS), keys.group(GROUP_OF)
    for i in range(2):
        await redis.xadd(stream, {"n": str(i)})
    await redis.xgroup_create(stream, group, id="0")
    await redis.xreadgroup(group, "c1", {stream: ">"}, count=2)
    for i in range(10):
        await redis.xadd(stream, {"n": str(2 + i)})
    await redis.xtrim(stream, maxlen=3, approximate=False)
    return stream, group


async def test_undelivered__a_group_behind_a_trim__the_entries_the_stream_still_holds(
    redis_async: aioredis.Redis, keys: KeySpace
) -> None:
    stream, group = await _trimmed_past_the_group(redis_async, keys)
    assert await undelivered(redis_async, stream, await _row(redis_async, stream, group)) == 3


async def test_undelivered__a_group_that_read_everything_after_a_trim__none(
    redis_async: aioredis.Redis, keys: KeySpace
) -> None:
    stream, group = await _trimmed_past_the_group(redis_async, keys)
    await redis_async.xreadgroup(group, "c1", {stream: ">"}, count=100)  # the 3 left
    row = await _row(redis_async, stream, group)
    assert await undelivered(redis_async, stream, row) == 0
    assert await group_backlog(redis_async, stream, group) == 5  # 5 pending (2 + 3), none to deliver


async def test_consumer_lag__after_catching_up_past_a_trim__zero_as_the_status_shows_it(
    redis_async: aioredis.Redis, keys: KeySpace
) -> None:
    stream = keys.stream(Topic.ORDERS)
    c = orders_consumer(redis_async, keys)
    await c.ensure_group()
    publisher = Publisher(redis_async, CODEC, keys=keys, service=ServiceName.RISK, maxlen=None)
    await publisher.publish_many(Topic.ORDERS, make_messages(CODEC, Topic.ORDERS, 20))
    seen = Collector()
    assert await c.poll_once(seen) == 20
    await publisher.publish_many(Topic.ORDERS, make_messages(CODEC, Topic.ORDERS, 30, start=20))
    await redis_async.xtrim(stream, maxlen=5, approximate=False)  # 25 never delivered to it
    assert await c.poll_once(seen) == 5
    assert len(seen.ids) == 25
    assert await c.lag() == 0  # caught up: no backlog left on the gauge or in `cdb status`


async def test_undelivered__lag_unknown_after_a_deletion__the_stream_bounds_it_and_read_through_is_none(
    redis_async: aioredis.Redis, keys: KeySpace
) -> None:
    stream, group = keys.stream(Topic.ORDERS), keys.group(GROUP_OF)
    await redis_async.xadd(stream, {"n": "0"})
    await redis_async.xgroup_create(stream, group, id="0")
    await redis_async.xreadgroup(group, "c1", {stream: ">"}, count=1)
    ahead = [await redis_async.xadd(stream, {"n": str(i)}) for i in range(1, 5)]
    await redis_async.xdel(stream, ahead[1])  # a hole ahead of the group: Redis cannot count
    row = await _row(redis_async, stream, group)
    assert await undelivered(redis_async, stream, row) in (3, 4)  # exact (newer Redis) or the length
    await redis_async.xreadgroup(group, "c1", {stream: ">"}, count=10)
    assert await undelivered(redis_async, stream, await _row(redis_async, stream, group)) == 0
