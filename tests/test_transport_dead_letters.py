"""Bad input is parked, counted and logged, never dropped, and never stops the consumer."""

from __future__ import annotations

import io
import json
import random
from collections import Counter
from collections.abc import Callable, Iterator

import pytest
import redis
import redis.asyncio as aioredis

from core.codec import build_codec
from core.codec.fields import field_map_bytes
from core.errors import ContractError
from core.logging import configure_logging
from core.metrics import KNOWN_REASONS, bounded_reason
from core.redis import (
    DeadLetterCause,
    DeadLetters,
    StreamConsumer,
    count_dead_letters,
    read_dead_letters,
)
from core.topics import CodecPath, KeySpace, Profile, ServiceName, Topic
from tests.transport_helpers import Collector, poll_until, valid_values

pytestmark = pytest.mark.integration

TOPIC = Topic.MARKET_DATA
MAX_BYTES = 2_048
CODECS = {
    "legacy": build_codec(CodecPath.LEGACY, max_bytes=MAX_BYTES),
    "pydantic-lenient": build_codec(CodecPath.PYDANTIC, Profile.LENIENT, max_bytes=MAX_BYTES),
    "pydantic-strict": build_codec(CodecPath.PYDANTIC, Profile.STRICT, max_bytes=MAX_BYTES),
}
FieldMap = dict[bytes, bytes]
Mutation = Callable[[FieldMap, random.Random], FieldMap]


def _valid_fields(i: int) -> FieldMap:
    strict = CODECS["pydantic-strict"]
    message = strict.build(TOPIC, valid_values(TOPIC, i))
    return {k.encode(): v.encode() for k, v in strict.to_fields(TOPIC, message).items()}


def _set(name: bytes, *values: bytes) -> Mutation:
    def mutate(fields: FieldMap, rng: random.Random) -> FieldMap:
        return {**fields, name: rng.choice(values)}

    return mutate


def _drop(fields: FieldMap, rng: random.Random) -> FieldMap:
    name = rng.choice([b"symbol", b"price", b"volume", b"side", b"venue"])
    return {k: v for k, v in fields.items() if k != name}


def _huge_string(fields: FieldMap, rng: random.Random) -> FieldMap:
    return {**fields, b"symbol": b'"' + b"A" * rng.randint(100, 1_500) + b'"'}


def _oversized(fields: FieldMap, rng: random.Random) -> FieldMap:
    return {**fields, b"venue": b'"' + b"x" * rng.randint(MAX_BYTES, 2 * MAX_BYTES) + b'"'}


def _bad_field_name(fields: FieldMap, rng: random.Random) -> FieldMap:
    return {**fields, bytes([0xFF, rng.randint(0x80, 0xFE)]): b"1"}


def _deep(fields: FieldMap, rng: random.Random) -> FieldMap:
    depth = rng.randint(10, 900)
    return {**fields, b"price": b"[" * depth + b"]" * depth}


MUTATIONS: dict[str, Mutation] = {
    "malformed_json": _set(b"price", b"nope", b'{"', b"[1,2", b"", b"'single'", b"\xff\xfe", b"1 2"),
    "wrong_type": _set(b"side", b"1", b"true", b"null", b'["BUY"]'),
    "wrong_type_number": _set(b"volume", b'"lots"', b"true", b'{"a":1}'),
    "missing_field": _drop,
    "not_finite": _set(b"price", b"NaN", b"Infinity", b"-Infinity"),
    "huge_string": _huge_string,
    "oversized": _oversized,
    "out_of_range": _set(b"price", b"-1", b"0", b"-0.0001"),
    "seconds_timestamp": _set(b"timestamp", b"1767225600", b"17672256"),
    "unknown_enum": _set(b"side", b'"HOLD"', b'"buy"', b'""'),
    "bad_field_name": _bad_field_name,
    "deep_nesting": _deep,
}


def fuzzed_bad_entries(n: int, seed: int) -> list[FieldMap]:
    """``n`` stream entries, each broken in one of the ways in :data:`MUTATIONS`."""
    rng = random.Random(seed)
    kinds = list(MUTATIONS.values())
    return [kinds[i % len(kinds)](_valid_fields(i), rng) for i in range(n)]


@pytest.fixture
def log_buffer() -> Iterator[io.StringIO]:
    """The JSON log lines written during the test."""
    buffer = io.StringIO()
    configure_logging("INFO", stream=buffer)
    yield buffer
    configure_logging()


@pytest.mark.parametrize("codec_name", list(CODECS))
async def test_fuzzed_bad_payloads__every_one_dead_lettered_counted_and_valid_ones_still_served(
    redis_async: aioredis.Redis, keys: KeySpace, log_buffer: io.StringIO, codec_name: str
) -> None:
    codec = CODECS[codec_name]
    consumer = StreamConsumer(
        redis_async, topic=TOPIC, service=ServiceName.SIGNAL, codec=codec, keys=keys, instance="s1"
    )
    await consumer.ensure_group()
    bad = fuzzed_bad_entries(10_000, seed=20260101)
    entries: list[tuple[str, FieldMap]] = []
    for i, fields in enumerate(bad):
        entries.append(("bad", fields))
        if i % 4 == 3:  # a valid message after every four bad ones
            entries.append(("valid", _valid_fields(100_000 + i)))
    pipe = redis_async.pipeline(transaction=False)
    for _, fields in entries:
        pipe.xadd(keys.stream(TOPIC), fields)  # type: ignore[arg-type]
    ids = [i.decode() for i in await pipe.execute()]
    bad_ids = {
        entry_id: fields for entry_id, (kind, fields) in zip(ids, entries, strict=True) if kind == "bad"
    }
    valid_ids = [entry_id for entry_id, (kind, _) in zip(ids, entries, strict=True) if kind == "valid"]
    handled = Collector()

    await poll_until(
        lambda: consumer.poll_once(handled), lambda: consumer.metrics.snapshot()["dead_letters"] >= 10_000
    )
    letters = await consumer.dead_letters.read(TOPIC, count=20_000)

    assert handled.ids == valid_ids
    assert len(letters) == 10_000
    assert {letter.stream_id for letter in letters} == set(bad_ids)
    for letter in letters:
        assert letter.cause == DeadLetterCause.INVALID
        assert letter.errors
        assert letter.errors[0]["type"] == letter.reason
        assert letter.raw == field_map_bytes(bad_ids[letter.stream_id])
        assert (letter.service, letter.path, letter.topic) == ("signal", codec.path.value, TOPIC.value)
    snap = consumer.metrics.snapshot()
    reasons = Counter(bounded_reason(letter.reason) for letter in letters)
    assert snap["messages_invalid"] == snap["validation_errors"] == snap["dead_letters"] == 10_000
    assert snap["messages_ok"] == len(valid_ids)
    assert snap["validation_reasons"] == dict(reasons)
    assert reasons["payload_too_large"] == sum(1 for f in bad if sum(map(len, f.values())) > MAX_BYTES) > 0
    assert set(reasons) <= KNOWN_REASONS
    assert await consumer.lag() == 0
    log_lines = log_buffer.getvalue().splitlines()
    invalid_logs = [json.loads(line) for line in log_lines if '"consumer.invalid"' in line]
    assert len(invalid_logs) == 10_000
    assert max(len(line) for line in log_lines) < MAX_BYTES  # previews, never whole payloads


async def test_oversized_entry__refused_before_parsing_and_dead_lettered_with_its_bytes(
    redis_async: aioredis.Redis, keys: KeySpace
) -> None:
    codec = CODECS["pydantic-strict"]
    consumer = StreamConsumer(
        redis_async, topic=TOPIC, service=ServiceName.SIGNAL, codec=codec, keys=keys, instance="s1"
    )
    await consumer.ensure_group()
    fields = {b"junk": b"[" * 100_000}  # would be expensive to parse; must not be parsed at all
    entry_id = (await redis_async.xadd(keys.stream(TOPIC), fields)).decode()  # type: ignore[arg-type]

    await consumer.poll_once(Collector())
    [letter] = await consumer.dead_letters.read(TOPIC)

    assert letter.reason == "payload_too_large"
    assert letter.stream_id == entry_id
    assert letter.raw == field_map_bytes(fields)


async def test_dead_letters__park_from_a_producer_then_read_back_with_the_blocking_helpers(
    redis_async: aioredis.Redis, redis_sync: redis.Redis, keys: KeySpace
) -> None:
    dead = DeadLetters(redis_async, keys)
    error = ContractError(
        topic=TOPIC.value,
        path="pydantic",
        profile="strict",
        raw=b"\x08\x01garbage",
        errors=[{"type": "frame_invalid", "loc": (), "msg": "not a PushDataV3ApiWrapper"}],
    )

    first = await dead.park(
        TOPIC, error.raw, error, service=ServiceName.WS, path=CodecPath.PYDANTIC, profile="strict"
    )
    second = await dead.park(
        TOPIC, b"{}", RuntimeError("boom"), service=ServiceName.WS, path=CodecPath.PYDANTIC, stream_id="1-1"
    )
    newest, oldest = read_dead_letters(redis_sync, TOPIC, keys=keys)

    assert count_dead_letters(redis_sync, TOPIC, keys=keys) == 2
    assert (newest.entry_id, oldest.entry_id) == (second, first)
    assert oldest.raw == b"\x08\x01garbage"
    assert oldest.reason == "frame_invalid"
    assert oldest.cause == DeadLetterCause.INVALID
    assert oldest.errors == [{"type": "frame_invalid", "loc": [], "msg": "not a PushDataV3ApiWrapper"}]
    assert (oldest.service, oldest.path, oldest.profile) == ("ws", "pydantic", "strict")
    assert newest.cause == DeadLetterCause.HANDLER_FAILED
    assert newest.stream_id == "1-1"
    assert newest.errors[0]["msg"] == "boom"
    assert [d.entry_id for d in read_dead_letters(redis_sync, TOPIC, keys=keys, newest_first=False)] == [
        first,
        second,
    ]
