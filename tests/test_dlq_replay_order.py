"""``cdb dlq replay`` puts letters back in the order their messages first came, not the order
they were parked: signal ignores a trade not newer than its symbol's last, so a replay out of
the original order would make it drop valid trades as stale."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
import redis.asyncio as aioredis

from core.codec import decode_field_map, encode_field_map
from core.codec.fields import field_map_bytes
from core.redis.dead_letters import letter_fields
from core.topics import KeySpace, ServiceName, Topic
from tests.ops_helpers import cdb_json
from tests.transport_helpers import BASE_MS, valid_values

pytestmark = pytest.mark.integration

ERROR = [{"type": "handler_error", "loc": [], "msg": "a bug since fixed"}]


def _trade(i: int) -> dict[str, Any]:
    """A complete v1.0 trade of BTC/USDT at ``BASE_MS + i``, trade id ``t<i>``."""
    return {**valid_values(Topic.MARKET_DATA, i), "trade_id": f"t{i}", "api_version": "v1.0"}


async def _park(
    redis: aioredis.Redis, keys: KeySpace, parked_ms: int, trade: int, stream_ms: int | None
) -> None:
    """Park trade ``trade`` at ``parked_ms``: as signal parks a stream entry of id ``stream_ms``, or
    (``None``) as ws parks a frame that never became a stream entry."""
    if stream_ms is None:
        fields = letter_fields(
            Topic.MARKET_DATA,
            json.dumps(_trade(trade)).encode(),
            ERROR,
            service=ServiceName.WS,
            path="pydantic",
        )
    else:
        raw = field_map_bytes(encode_field_map(_trade(trade)))
        fields = letter_fields(
            Topic.MARKET_DATA,
            raw,
            ERROR,
            service=ServiceName.SIGNAL,
            path="pydantic",
            stream_id=f"{stream_ms}-0",
            partition=0,
        )
    await redis.xadd(keys.dlq(Topic.MARKET_DATA), fields, id=f"{parked_ms}-0")  # type: ignore[arg-type]


async def test_dlq_replay__publishes_letters_in_their_original_order_not_the_order_they_were_parked(
    redis_async: aioredis.Redis, redis_url: str, keys: KeySpace
) -> None:
    # Parked in the order ws frame (trade 1500), trade 2000, trade 1000: a handler that kept
    # failing on the trade at 1000 parked it last, after its retries. A ws letter has no stream
    # id: it goes by when it was parked (when ws received it), between the two trades.
    await _park(redis_async, keys, parked_ms=BASE_MS + 1500, trade=1500, stream_ms=None)
    await _park(redis_async, keys, parked_ms=BASE_MS + 5000, trade=2000, stream_ms=BASE_MS + 2000)
    await _park(redis_async, keys, parked_ms=BASE_MS + 5001, trade=1000, stream_ms=BASE_MS + 1000)
    opts = ["--redis-url", redis_url, "--prefix", keys.prefix]
    report = await asyncio.to_thread(cdb_json, "dlq", "replay", "--topic", "market_data", "--all", *opts)

    assert report["refused"] is False
    assert report["ignored"] == 0  # none of them is stale: each is newer than the one before
    assert [o["status"] for o in report["outcomes"]] == ["replayed"] * 3
    entries = await redis_async.xrange(keys.stream(Topic.MARKET_DATA))
    assert [decode_field_map(f)["trade_id"] for _, f in entries] == ["t1000", "t1500", "t2000"]
