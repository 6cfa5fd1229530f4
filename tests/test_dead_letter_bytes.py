"""Dead letters bounded in bytes: a huge raw payload keeps its first bytes, its size and its sha256.

Before, the dead-letter stream was bounded in entries only and kept every payload whole
(30 oversized entries of 1 MB took 31 MB of Redis). Now a letter keeps at most
``max_payload_bytes`` of raw bytes (default: twice MAX_MESSAGE_BYTES plus 4 KiB, so any
message that passed the size check stays whole), ``cdb dlq show`` says it was cut, and
``cdb dlq replay`` refuses it instead of publishing a mangled message.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from typing import Any

import pytest
import redis.asyncio as aioredis
from hypothesis import given
from hypothesis import strategies as st

from core.codec import build_codec, encode_field_map
from core.codec.fields import field_map_bytes
from core.redis import DeadLetters, StreamConsumer
from core.redis.dead_letters import DEFAULT_DLQ_MAX_PAYLOAD_BYTES, DeadLetter, cap_payload
from core.settings import ServiceSettings
from core.topics import CodecPath, KeySpace, Profile, ServiceName, Topic
from tests.ops_helpers import cdb, cdb_json
from tests.transport_helpers import valid_values

TOPIC = Topic.MARKET_DATA
LENIENT = build_codec(CodecPath.PYDANTIC, Profile.LENIENT)  # MAX_MESSAGE_BYTES 65536
MARKUP = "[/b] [red]x[/red] [...]"


def _huge(i: int, pad: int) -> dict[str, str]:
    """A valid market_data entry plus an ignored field of ``pad`` bytes: too large, else fine."""
    return encode_field_map({**valid_values(TOPIC, i), "api_version": "v1.0", "note": "x" * pad})


async def _park_through_consumer(
    redis: aioredis.Redis, keys: KeySpace, entries: list[dict[str, str]], letters: DeadLetters
) -> list[DeadLetter]:
    for fields in entries:
        await redis.xadd(keys.stream(TOPIC), fields)  # type: ignore[arg-type]
    consumer = StreamConsumer(
        redis,
        topic=TOPIC,
        service=ServiceName.SIGNAL,
        codec=LENIENT,
        keys=keys,
        instance="sig-1",
        dead_letters=letters,
    )
    await consumer.ensure_group()
    while await consumer.poll_once(_never_called):
        pass
    return await letters.read(TOPIC, count=100, newest_first=False)


async def _never_called(*_: Any) -> None:
    raise AssertionError("an oversized entry reached the handler")


@given(raw=st.binary(max_size=300), limit=st.integers(min_value=0, max_value=400))
def test_cap_payload__any_bytes__prefix_kept_with_size_and_hash(raw: bytes, limit: int) -> None:
    fields: dict[str, bytes | str] = {"topic": "market_data", "raw": raw}
    capped = cap_payload(fields, limit)
    letter = DeadLetter.from_entry("1-0", capped)
    assert raw.startswith(letter.raw)
    assert len(letter.raw) == min(len(raw), limit)
    assert letter.raw_size == len(raw)
    assert letter.truncated is (len(raw) > limit)
    if letter.truncated:
        assert letter.raw_sha256 == hashlib.sha256(raw).hexdigest()
    else:
        assert capped is fields
        assert letter.raw_sha256 is None


@given(fields=st.dictionaries(st.binary(max_size=8), st.binary(max_size=16), max_size=5))
def test_field_map_bytes__any_bytes__every_name_and_value_comes_back_exactly(
    fields: dict[bytes, bytes],
) -> None:
    # A byte that is not UTF-8 used to become U+FFFD in the letter: the entry as sent was lost.
    raw = field_map_bytes(fields)
    pairs = json.loads(raw, object_pairs_hook=list)
    assert [
        (k.encode("utf-8", "surrogateescape"), v.encode("utf-8", "surrogateescape")) for k, v in pairs
    ] == [*fields.items()]


def test_field_map_bytes__utf8_text_stays_readable() -> None:
    raw = field_map_bytes({b"symbol": '"caf\u00e9/USDT"'.encode()})
    assert raw.decode("utf-8") == '{"symbol": "\\"caf\u00e9/USDT\\""}'


def test_dlq_payload_limit__settings_default_matches_the_writer_default() -> None:
    assert ServiceSettings.load(environ={}).dlq_payload_limit == DEFAULT_DLQ_MAX_PAYLOAD_BYTES


@pytest.mark.integration
async def test_dead_letters__oversized_payloads__cut_to_the_limit_with_size_and_sha256(
    redis_async: aioredis.Redis, keys: KeySpace
) -> None:
    entries = [_huge(i, 400_000) for i in range(5)]
    letters = await _park_through_consumer(redis_async, keys, entries, DeadLetters(redis_async, keys))
    assert len(letters) == 5
    for letter, fields in zip(letters, entries, strict=True):
        original = field_map_bytes(fields)  # what the letter held whole before
        assert letter.reason == "payload_too_large"
        assert letter.truncated
        assert letter.raw == original[:DEFAULT_DLQ_MAX_PAYLOAD_BYTES]
        assert letter.raw_size == len(original)
        assert letter.raw_sha256 == hashlib.sha256(original).hexdigest()
    used = await redis_async.memory_usage(keys.dlq(TOPIC), samples=0)
    assert used < 5 * 400_000 / 2  # whole, they took more than 5 x 400 KB


@pytest.mark.integration
async def test_dead_letters__invalid_message_within_max_message_bytes__kept_whole(
    redis_async: aioredis.Redis, keys: KeySpace
) -> None:
    # 60 KB of quotes: under MAX_MESSAGE_BYTES on the wire, ~2x that once rendered as JSON.
    fields = encode_field_map({**valid_values(TOPIC, 1), "price": -1, "note": '"' * 30_000})
    letters = await _park_through_consumer(redis_async, keys, [fields], DeadLetters(redis_async, keys))
    assert [x.reason for x in letters] == ["greater_than"]
    assert not letters[0].truncated
    assert letters[0].raw == field_map_bytes(fields)
    assert letters[0].raw_sha256 is None


@pytest.mark.integration
async def test_cdb_dlq_show__truncated_letter__says_so_with_sizes_and_sha256(
    redis_async: aioredis.Redis, redis_url: str, keys: KeySpace
) -> None:
    letters = await _park_through_consumer(
        redis_async, keys, [_huge(0, 200_000)], DeadLetters(redis_async, keys, max_payload_bytes=2_000)
    )
    letter = letters[0]
    opts = ["--redis-url", redis_url, "--prefix", keys.prefix]
    data = await asyncio.to_thread(cdb_json, "dlq", "show", letter.entry_id, *opts)
    assert (data["truncated"], data["raw_size"], data["raw_sha256"]) == (
        True,
        letter.raw_size,
        letter.raw_sha256,
    )
    assert len(data["raw"]) == 2_000
    shown = await asyncio.to_thread(cdb, "dlq", "show", letter.entry_id, *opts)
    assert shown.exit_code == 0, shown.output
    assert (
        f"TRUNCATED: first 2,000 of {letter.raw_size:,} bytes kept, sha256 {letter.raw_sha256}"
        in shown.stdout
    )
    listed = await asyncio.to_thread(cdb_json, "dlq", "list", "--topic", "market_data", *opts)
    assert [x["truncated"] for x in listed["market_data"]["letters"]] == [True]
    table = await asyncio.to_thread(cdb, "dlq", "list", "--topic", "market_data", *opts)
    assert "truncated)" in table.stdout  # "(raw truncated)" after the reason; the cell may wrap


@pytest.mark.integration
@pytest.mark.parametrize("cap", [2_000, None])
async def test_cdb_dlq_replay__truncated_letter_refused__whole_one_replayed(
    cap: int | None, redis_async: aioredis.Redis, redis_url: str, keys: KeySpace
) -> None:
    letters = await _park_through_consumer(
        redis_async, keys, [_huge(0, 200_000)], DeadLetters(redis_async, keys, max_payload_bytes=cap)
    )
    before = await redis_async.xlen(keys.stream(TOPIC))
    # --max-bytes above the payload: the whole letter would decode now; only truncation refuses it.
    args = ("dlq", "replay", "--topic", "market_data", "--all", "--max-bytes", "1000000")
    opts = ("--redis-url", redis_url, "--prefix", keys.prefix)
    report = await asyncio.to_thread(cdb_json, *args, *opts, expect=1 if cap else 0)
    outcomes = report["outcomes"]
    assert [o["entry_id"] for o in outcomes] == [letters[0].entry_id]
    added = await redis_async.xlen(keys.stream(TOPIC)) - before
    if cap:
        assert outcomes[0]["status"] == "still_invalid"
        assert outcomes[0]["errors"][0]["type"] == "payload_truncated"
        assert f"first 2000 of {letters[0].raw_size} bytes" in outcomes[0]["errors"][0]["msg"]
        assert added == 0
    else:
        assert outcomes[0]["status"] == "replayed"
        assert added == 1


@pytest.mark.integration
async def test_cdb_dlq__markup_in_payload_and_error__printed_verbatim(
    redis_async: aioredis.Redis, redis_url: str, keys: KeySpace
) -> None:
    letters = DeadLetters(redis_async, keys)
    entry_id = await letters.park(
        TOPIC,
        f'{{"symbol": "{MARKUP}"}}'.encode(),
        RuntimeError(f"handler said {MARKUP}"),
        service=ServiceName.SIGNAL,
        path="pydantic",
        stream_id="1-0",
    )
    opts = ["--redis-url", redis_url, "--prefix", keys.prefix]
    shown = await asyncio.to_thread(cdb, "dlq", "show", entry_id, *opts)
    assert shown.exit_code == 0, shown.output
    assert f'{{"symbol": "{MARKUP}"}}' in shown.stdout
    assert f"handler said {MARKUP}" in shown.stdout
    listed = await asyncio.to_thread(cdb, "dlq", "list", "--topic", "market_data", *opts)
    assert listed.exit_code == 0, listed.output
    assert all(token in listed.stdout for token in MARKUP.split())  # a table cell may wrap at blanks
