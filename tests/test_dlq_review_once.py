"""``cdb dlq review`` records a review once; ``cdb cutover check`` then counts only newer letters."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis.asyncio as aioredis

from core.errors import ContractError
from core.redis.dead_letters import DeadLetters
from core.topics import KeySpace, ServiceName, Topic
from migration.dlq_review import later_point
from tests.ops_helpers import cdb_json

pytestmark = pytest.mark.integration


async def _park(redis: aioredis.Redis, keys: KeySpace, n: int) -> None:
    err = ContractError(topic="orders", path="legacy", profile=None, raw=b"{}", errors=[])
    for _ in range(n):
        await DeadLetters(redis, keys).park(
            Topic.ORDERS, b"{}", err, service=ServiceName.EXECUTION, path="legacy"
        )


def _dead_letters(redis_url: str, keys: KeySpace) -> dict[str, Any]:
    report = cdb_json("cutover", "check", "--redis-url", redis_url, "--prefix", keys.prefix, expect=1)
    [finding] = [f for f in report["findings"] if f["name"] == "dead_letters"]
    return finding  # type: ignore[no-any-return]


async def test_cdb_dlq_review__is_recorded_once_and_only_newer_letters_count(
    redis_async: aioredis.Redis, redis_url: str, keys: KeySpace
) -> None:
    await _park(redis_async, keys, 2)
    before = await asyncio.to_thread(_dead_letters, redis_url, keys)
    assert (before["ok"], before["data"]["orders"]["unreviewed"]) == (False, 2)

    recorded = await asyncio.to_thread(
        cdb_json, "dlq", "review", "--redis-url", redis_url, "--prefix", keys.prefix
    )
    [newest] = await redis_async.xrevrange(keys.dlq(Topic.ORDERS), count=1)
    assert recorded["orders"] == newest[0].decode()
    assert recorded["signals"] is None  # empty: nothing recorded

    after = await asyncio.to_thread(_dead_letters, redis_url, keys)
    assert after["ok"] is True
    assert after["data"]["orders"] == {
        "entries": 2,
        "unreviewed": 0,
        "replayed_kept": 0,  # the review is no replay mark
        "reviewed_through": newest[0].decode(),
    }

    await _park(redis_async, keys, 1)
    later = await asyncio.to_thread(_dead_letters, redis_url, keys)
    assert (later["ok"], later["data"]["orders"]["unreviewed"]) == (False, 1)


@pytest.mark.parametrize(
    ("a", "b", "later"),
    [(None, None, None), ("5-0", None, "5-0"), (None, "7", "7"), ("5-9", "5-10", "5-10"), ("6", "6-3", "6")],
)
def test_later_point__picks_the_later_review_point(a: str | None, b: str | None, later: str | None) -> None:
    assert later_point(a, b) == later
