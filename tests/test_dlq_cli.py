"""``cdb dlq list / show / replay`` on dead letters a real consumer parked on the real Redis."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import pytest
import redis.asyncio as aioredis

from core.codec import build_codec, decode_field_map, encode_field_map
from core.redis import StreamConsumer
from core.redis.dead_letters import DeadLetters, letter_fields
from core.topics import CodecPath, KeySpace, Profile, ServiceName, Topic
from tests.ops_helpers import cdb, cdb_json
from tests.transport_helpers import Collector, poll_until, valid_values

pytestmark = pytest.mark.integration

STRICT = build_codec(CodecPath.PYDANTIC, Profile.STRICT)
LENIENT = build_codec(CodecPath.PYDANTIC, Profile.LENIENT)


def _legacy_signal(i: int) -> dict[str, str]:
    """A signal as a legacy producer writes it: no api_version, no timestamp (strict refuses it)."""
    values = valid_values(Topic.SIGNALS, i)
    del values["timestamp"]
    return encode_field_map(values)


def _bad_signal(i: int) -> dict[str, str]:
    """A signal no profile accepts: strength above 1."""
    return encode_field_map({**valid_values(Topic.SIGNALS, i), "api_version": "v1.0", "strength": 7.5})


def _consumer(redis: aioredis.Redis, keys: KeySpace, codec: Any) -> StreamConsumer:
    return StreamConsumer(
        redis, topic=Topic.SIGNALS, service=ServiceName.RISK, codec=codec, keys=keys, instance="risk-1"
    )


async def _park(redis: aioredis.Redis, keys: KeySpace, legacy: int = 3, bad: int = 2) -> dict[str, list[str]]:
    """A strict risk consumer dead-letters ``legacy`` legacy signals and ``bad`` invalid ones."""
    stream = keys.stream(Topic.SIGNALS)
    for i in range(legacy):
        await redis.xadd(stream, _legacy_signal(i))  # type: ignore[arg-type]
    for i in range(bad):
        await redis.xadd(stream, _bad_signal(100 + i))  # type: ignore[arg-type]
    consumer = _consumer(redis, keys, STRICT)
    await consumer.ensure_group()
    await consumer.poll_once(Collector())
    letters = await redis.xrange(keys.dlq(Topic.SIGNALS))
    assert len(letters) == legacy + bad
    by_kind: dict[str, list[str]] = {"legacy": [], "bad": []}
    for raw_id, fields in letters:
        by_kind["bad" if fields[b"reason"] == b"less_than_equal" else "legacy"].append(raw_id.decode())
    return by_kind


def _opts(redis_url: str, keys: KeySpace) -> list[str]:
    return ["--redis-url", redis_url, "--prefix", keys.prefix]


async def _run(*args: str, expect: int = 0) -> Any:
    return await asyncio.to_thread(cdb_json, *args, expect=expect)


async def _replay(*args: str, expect: int = 0) -> list[dict[str, Any]]:
    """``cdb dlq replay ARGS --json``: the outcome of each selected letter."""
    report = await _run("dlq", "replay", *args, expect=expect)
    assert report["refused"] is False
    outcomes: list[dict[str, Any]] = report["outcomes"]
    return outcomes


async def test_dlq_replay__moves_fixed_messages_back_and_leaves_the_still_bad_ones(
    redis_async: aioredis.Redis, redis_url: str, keys: KeySpace
) -> None:
    parked = await _park(redis_async, keys)
    before = await redis_async.xlen(keys.stream(Topic.SIGNALS))
    outcomes = await _replay("--topic", "signals", "--all", *_opts(redis_url, keys), expect=1)
    status = {o["entry_id"]: o["status"] for o in outcomes}
    assert status == {
        **dict.fromkeys(parked["legacy"], "replayed"),
        **dict.fromkeys(parked["bad"], "still_invalid"),
    }
    assert all(o["errors"][0]["loc"] == ["strength"] for o in outcomes if o["status"] == "still_invalid")

    # Written back through the lenient codec: a complete v1.0 field map, not the raw letter.
    new_entries = (await redis_async.xrange(keys.stream(Topic.SIGNALS)))[before:]
    values = [decode_field_map(f) for _, f in new_entries]
    assert [v["signal_id"] for v in values] == ["sig-0", "sig-1", "sig-2"]
    assert all(v["api_version"] == "v1.0" and isinstance(v["timestamp"], int) for v in values)
    assert [e[0].decode() for e in new_entries] == [o["stream_id"] for o in outcomes if o["stream_id"]]

    # The consumer, now lenient, handles the replayed entries.
    handled = Collector()
    consumer = _consumer(redis_async, keys, LENIENT)
    await poll_until(lambda: consumer.poll_once(handled), lambda: len(handled.messages) == 3)
    assert [m.signal_id for m in handled.messages] == ["sig-0", "sig-1", "sig-2"]

    # Nothing deleted without --delete-replayed: the replayed letters are marked.
    assert await redis_async.xlen(keys.dlq(Topic.SIGNALS)) == 5
    marks = await redis_async.hgetall(keys.dlq_replayed(Topic.SIGNALS))
    assert sorted(k.decode() for k in marks) == sorted(parked["legacy"])


async def test_dlq_replay__delete_replayed_removes_only_the_replayed_letters(
    redis_async: aioredis.Redis, redis_url: str, keys: KeySpace
) -> None:
    parked = await _park(redis_async, keys)
    args = ("--topic", "signals", "--all", "--delete-replayed", *_opts(redis_url, keys))
    outcomes = await _replay(*args, expect=1)
    assert sum(o["deleted"] for o in outcomes) == 3
    left = [i.decode() for i, _ in await redis_async.xrange(keys.dlq(Topic.SIGNALS))]
    assert left == parked["bad"]
    assert await redis_async.hlen(keys.dlq_replayed(Topic.SIGNALS)) == 0


async def test_dlq_replay__selected_ids_only_and_a_second_replay_skips_them(
    redis_async: aioredis.Redis, redis_url: str, keys: KeySpace
) -> None:
    parked = await _park(redis_async, keys)
    first = parked["legacy"][0]
    once = await _replay("--topic", "signals", first, *_opts(redis_url, keys))
    twice = await _replay("--topic", "signals", first, *_opts(redis_url, keys))
    assert [(o["entry_id"], o["status"]) for o in once] == [(first, "replayed")]
    assert [(o["status"], o["stream_id"]) for o in twice] == [("already_replayed", once[0]["stream_id"])]
    assert await redis_async.xlen(keys.stream(Topic.SIGNALS)) == 6


async def test_dlq_replay__a_letter_named_twice_is_replayed_once(
    redis_async: aioredis.Redis, redis_url: str, keys: KeySpace
) -> None:
    # An id pasted twice, or given as its millisecond and as its full id, is one letter: it is
    # published once (not refused as a duplicate of itself, nor written twice when forced).
    parked = await _park(redis_async, keys, legacy=2, bad=0)
    first, second = parked["legacy"]  # the first letter is the first of its millisecond
    for ids in ([first, first.split("-")[0], first], [second, second, "--include-stale"]):
        letter = ids[0]
        before = await redis_async.xlen(keys.stream(Topic.SIGNALS))
        outcomes = await _replay("--topic", "signals", *ids, *_opts(redis_url, keys))
        assert [(o["entry_id"], o["status"], o["ignored"]) for o in outcomes] == [(letter, "replayed", None)]
        assert await redis_async.xlen(keys.stream(Topic.SIGNALS)) == before + 1


async def test_dlq_replay__dry_run_and_strict_write_nothing(
    redis_async: aioredis.Redis, redis_url: str, keys: KeySpace
) -> None:
    parked = await _park(redis_async, keys, legacy=1, bad=0)
    dry = await _replay("--topic", "signals", "--all", "--dry-run", *_opts(redis_url, keys))
    strict = await _replay(
        "--topic",
        "signals",
        "--all",
        "--profile",
        "strict",
        *_opts(redis_url, keys),
        expect=1,
    )
    assert [(o["status"], o["defaulted"]) for o in dry] == [("would_replay", ["api_version", "timestamp"])]
    assert [(o["entry_id"], o["status"]) for o in strict] == [(parked["legacy"][0], "still_invalid")]
    assert await redis_async.xlen(keys.stream(Topic.SIGNALS)) == 1
    assert await redis_async.hlen(keys.dlq_replayed(Topic.SIGNALS)) == 0


async def test_dlq_replay__unknown_id_is_reported_and_exits_1(redis_url: str, keys: KeySpace) -> None:
    outcomes = await _replay("--topic", "orders", "1-1", *_opts(redis_url, keys), expect=1)
    assert outcomes == [
        {
            "entry_id": "1-1",
            "status": "not_found",
            "stream_id": None,
            "deleted": False,
            "defaulted": [],
            "errors": [],
            "ignored": None,
        }
    ]


def test_dlq_replay__needs_ids_or_all() -> None:
    result = cdb("dlq", "replay", "--topic", "signals", "--redis-url", "redis://127.0.0.1:1/0")
    assert result.exit_code == 2
    assert "give dead-letter ids or --all" in result.output


async def test_dlq_list__shows_each_letter_with_its_errors_and_replay_mark(
    redis_async: aioredis.Redis, redis_url: str, keys: KeySpace
) -> None:
    parked = await _park(redis_async, keys, legacy=1, bad=1)
    await _replay("--topic", "signals", parked["legacy"][0], *_opts(redis_url, keys))
    listing = await _run("dlq", "list", *_opts(redis_url, keys))
    assert {t: d["total"] for t, d in listing.items()} == {t.value: 0 for t in Topic} | {"signals": 2}
    letters = {x["id"]: x for x in listing["signals"]["letters"]}
    legacy, bad = letters[parked["legacy"][0]], letters[parked["bad"][0]]
    assert (legacy["service"], legacy["path"], legacy["profile"], legacy["reason"]) == (
        "risk",
        "pydantic",
        "strict",
        "missing",
    )
    assert {tuple(e["loc"]) for e in legacy["errors"]} == {("api_version",), ("timestamp",)}
    assert legacy["replayed_to"] is not None
    assert bad["replayed_to"] is None
    table = await asyncio.to_thread(cdb, "dlq", "list", "--topic", "signals", *_opts(redis_url, keys))
    assert table.exit_code == 0, table.output
    assert parked["bad"][0] in table.stdout
    assert "less_than_equal" in table.stdout


async def test_dlq_show__prints_errors_and_raw_bytes(
    redis_async: aioredis.Redis, redis_url: str, keys: KeySpace
) -> None:
    parked = await _park(redis_async, keys, legacy=0, bad=1)
    shown = await _run("dlq", "show", parked["bad"][0], *_opts(redis_url, keys))
    assert shown["topic"] == "signals"
    assert json.loads(shown["raw"])["strength"] == "7.5"
    assert shown["errors"][0]["type"] == "less_than_equal"
    text = await asyncio.to_thread(cdb, "dlq", "show", parked["bad"][0], *_opts(redis_url, keys))
    assert text.exit_code == 0
    assert "less_than_equal" in text.stdout


async def test_dlq_show__unknown_id_exits_1(redis_url: str, keys: KeySpace) -> None:
    result = await asyncio.to_thread(cdb, "dlq", "show", "1-1", *_opts(redis_url, keys))
    assert result.exit_code == 1
    assert "no dead letter 1-1" in result.output


async def test_dlq_show__a_payload_that_is_not_utf_8_comes_back_byte_for_byte_and_the_partition_shows(
    redis_async: aioredis.Redis, redis_url: str, keys: KeySpace
) -> None:
    """A bad exchange frame is binary: `raw` shows U+FFFD, `raw_base64` gives the bytes back."""
    frame = b"\x0a\x03\xff\xfe\x00binary"
    dead_letters = DeadLetters(redis_async, keys)
    [entry_id] = await dead_letters.park_many(
        Topic.MARKET_DATA,
        [
            letter_fields(
                Topic.MARKET_DATA,
                frame,
                [{"type": "frame_invalid", "loc": (), "msg": "x"}],
                service=ServiceName.WS,
                path="pydantic",
                stream_id="1-0",
                partition=3,
            )
        ],
    )
    shown = await _run("dlq", "show", entry_id, "--topic", "market_data", *_opts(redis_url, keys))
    assert base64.b64decode(shown["raw_base64"]) == frame
    assert shown["partition"] == 3
    text = await asyncio.to_thread(cdb, "dlq", "show", entry_id, *_opts(redis_url, keys))
    assert "partition: 3" in text.stdout


async def test_dlq_show__an_id_held_by_two_topics_needs_topic(
    redis_async: aioredis.Redis, redis_url: str, keys: KeySpace
) -> None:
    """Dead-letter ids are unique per topic only: without --topic the letter shown would be a guess."""
    entry_id = "1767225600000-0"
    for topic in (Topic.SIGNALS, Topic.ORDERS):
        fields = letter_fields(
            topic, b"{}", [{"type": "x", "loc": (), "msg": topic.value}], service="t", path="p"
        )
        await redis_async.xadd(keys.dlq(topic), fields, id=entry_id)  # type: ignore[arg-type]
    ambiguous = await asyncio.to_thread(cdb, "dlq", "show", entry_id, *_opts(redis_url, keys))
    assert ambiguous.exit_code == 2
    assert (
        f"dead letter {entry_id} is in more than one topic (signals, orders): give --topic"
        in ambiguous.output
    )
    chosen = await _run("dlq", "show", entry_id, "--topic", "orders", *_opts(redis_url, keys))
    assert (chosen["topic"], chosen["errors"][0]["msg"]) == ("orders", "orders")
