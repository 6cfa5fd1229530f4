"""``cdb dlq replay`` of dead letters of later contract versions (v1.1, v2.0) on the real Redis.

A v2.0 or v1.1 message is dead-lettered when its consumer could not read it then (it ran
before it read that version, or had it retired) or hit a transient error. Replayed, it goes
back **in the version it was written in**, every stream field byte for byte, and a consumer
that reads that version handles it; a consumer that still cannot read it leaves it in the
dead letters, never converted to a version its producer did not write.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

import pytest
import redis.asyncio as aioredis

from core.codec import build_codec
from core.redis import StreamConsumer
from core.redis.dead_letters import DeadLetter
from core.redis.dlq_replay import as_written
from core.topics import CodecPath, KeySpace, Profile, ServiceName, Topic
from core.versions.codec import VersionedCodec
from tests.ops_helpers import cdb_json
from tests.transport_helpers import Collector, poll_until
from tests.versions_helpers import order

pytestmark = pytest.mark.integration

STRICT = build_codec(CodecPath.PYDANTIC, Profile.STRICT)


def _writer(version: str) -> VersionedCodec:
    return VersionedCodec(STRICT, writes={Topic.ORDERS: version})


def _consumer(redis: aioredis.Redis, keys: KeySpace, codec: Any, instance: str) -> StreamConsumer:
    return StreamConsumer(
        redis, topic=Topic.ORDERS, service=ServiceName.EXECUTION, codec=codec, keys=keys, instance=instance
    )


async def _park(redis: aioredis.Redis, keys: KeySpace, fields: list[Mapping[str, str]]) -> list[str]:
    """``fields`` appended to orders_stream and dead-lettered by a consumer that reads v1.0 only
    (it ran before it could read a later version); the stream ids of the entries."""
    ids = [(await redis.xadd(keys.stream(Topic.ORDERS), dict(f))).decode() for f in fields]  # type: ignore[arg-type]
    old = _consumer(redis, keys, STRICT, "exe-old")
    await old.ensure_group()
    await poll_until(
        lambda: old.poll_once(Collector()), lambda: old.metrics.snapshot()["dead_letters"] == len(ids)
    )
    return ids


def _text(fields: Mapping[Any, Any]) -> dict[str, str]:
    return {
        (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
        for k, v in fields.items()
    }


async def test_dlq_replay__v2_0_and_v1_1_letters_go_back_byte_for_byte_and_a_reader_of_them_handles_them(
    redis_async: aioredis.Redis, redis_url: str, keys: KeySpace
) -> None:
    written = {
        "v2.0": _writer("v2.0").to_fields(
            Topic.ORDERS, order(order_id="ord-v2", quantity=0.1, price=64000.25)
        ),
        "v1.1": _writer("v1.1").to_fields(Topic.ORDERS, order(order_id="ord-v11")),
    }
    originals = await _park(redis_async, keys, list(written.values()))
    assert written["v2.0"]["quantity"] == '"0.1"'  # exact decimal strings on the wire

    opts = ("--redis-url", redis_url, "--prefix", keys.prefix)
    report = await asyncio.to_thread(cdb_json, "dlq", "replay", "--topic", "orders", "--all", *opts)

    assert [o["status"] for o in report["outcomes"]] == ["replayed", "replayed"]
    entries = await redis_async.xrange(keys.stream(Topic.ORDERS))
    replayed = {entry_id.decode(): _text(f) for entry_id, f in entries if entry_id.decode() not in originals}
    assert list(replayed.values()) == [dict(written["v2.0"]), dict(written["v1.1"])]
    new = _consumer(redis_async, keys, VersionedCodec(STRICT), "exe-new")
    handled = Collector()
    await poll_until(lambda: new.poll_once(handled), lambda: len(handled.ids) == 2)
    assert handled.ids == list(replayed)
    assert [m.order_id for m in handled.messages] == ["ord-v2", "ord-v11"]
    assert new.metrics.snapshot()["dead_letters"] == 0


async def test_dlq_replay__a_v2_0_letter_stays_while_its_consumer_has_v2_0_retired(
    redis_async: aioredis.Redis, redis_url: str, keys: KeySpace
) -> None:
    fields = _writer("v2.0").to_fields(Topic.ORDERS, order(order_id="ord-v2"))
    await _park(redis_async, keys, [fields])
    opts = ("--redis-url", redis_url, "--prefix", keys.prefix, "--retired", "v2.0")
    report = await asyncio.to_thread(cdb_json, "dlq", "replay", "--topic", "orders", "--all", *opts, expect=1)
    [outcome] = report["outcomes"]
    assert outcome["status"] == "still_invalid"
    assert outcome["errors"][0]["type"] == "retired_api_version"
    assert await redis_async.xlen(keys.stream(Topic.ORDERS)) == 1  # nothing published


async def test_dlq_catch_up__counts_a_v2_0_letter_its_consumer_now_reads_unless_it_has_v2_0_retired(
    redis_async: aioredis.Redis, redis_url: str, keys: KeySpace
) -> None:
    fields = _writer("v2.0").to_fields(Topic.ORDERS, order(order_id="ord-v2"))
    await _park(redis_async, keys, [fields])
    opts = ("--redis-url", redis_url, "--prefix", keys.prefix, "--dry-run")
    plan = await asyncio.to_thread(cdb_json, "dlq", "catch-up", "--topic", "orders", *opts)
    assert plan["letters"] == 1
    retired = await asyncio.to_thread(
        cdb_json, "dlq", "catch-up", "--topic", "orders", *opts, "--retired", "v2.0"
    )
    assert retired["letters"] == 0


def test_as_written__reads_a_later_version_s_letter_up_to_the_consumer_s_own_size_limit() -> None:
    """A v1.1 letter over 64 KB (a large extra field), replayed for a consumer that reads bodies
    up to 200 KB (MAX_MESSAGE_BYTES): the codec that writes it back reads as much as the consumer
    does, instead of refusing it as payload_too_large at the default 64 KB."""
    consumer = VersionedCodec(
        build_codec(CodecPath.PYDANTIC, Profile.LENIENT, max_bytes=200_000), max_bytes=200_000
    )
    fields = {
        **_writer("v1.1").to_fields(Topic.ORDERS, order(order_id="ord-big")),
        "note": '"' + "x" * 100_000 + '"',
    }
    raw = json.dumps(fields).encode()
    letter = DeadLetter(
        entry_id="1-0",
        topic="orders",
        service="execution",
        path="pydantic",
        profile="lenient",
        stream_id="1767225600000-0",
        cause="invalid",
        reason="unknown_api_version",
        errors=[],
        raw=raw,
        time_ms=1,
        deliveries=1,
        raw_size=len(raw),
    )
    decoded = consumer.from_fields(Topic.ORDERS, fields, entry_id="1767225600000-0")

    writer, again = as_written(consumer, Topic.ORDERS, letter, decoded)

    assert writer.writes(Topic.ORDERS) == "v1.1"
    assert again.message.order_id == "ord-big"
