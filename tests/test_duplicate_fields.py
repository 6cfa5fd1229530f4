"""A stream entry that gives a field name twice is refused, never read as one of its values.

Redis keeps every pair of an ``XADD``, so ``side "BUY" ... side "SELL"`` is a valid entry to
Redis. Read as a dict it became one field whose value was the last one given: risk turned such
a signal into a SELL order on every path. Now the entry is refused on every path
(``duplicate_field``, naming the field), dead-lettered with every pair as it came, and the rest
of its batch is handled as usual.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import redis.asyncio as aioredis
from hypothesis import given
from hypothesis import strategies as st

from core.codec import Codec, encode_field_map
from core.codec.fields import RepeatedFields, field_map_bytes, fields_of_flat, fields_of_pairs
from core.codec.registry import shadow_codec
from core.codec_modes import CodecMode, mode_available
from core.errors import ContractError
from core.redis import DeadLetters, StreamConsumer
from core.redis.dlq_replay import redecode
from core.topics import KeySpace, ServiceName, Topic
from core.versions.codec import VersionedCodec
from tests.transport_helpers import CODECS, Collector, orders_consumer, valid_values


def _paths() -> dict[str, Codec]:
    """Every codec a service can read with here: each path and profile, as the versioned codec
    wraps it, and shadow mode."""
    paths: dict[str, Codec] = {**CODECS}
    paths.update({f"versioned {name}": VersionedCodec(codec) for name, codec in CODECS.items()})
    if mode_available(CodecMode.SHADOW) and "legacy" in CODECS:
        paths["shadow"] = shadow_codec(CODECS["pydantic-lenient"], CODECS["legacy"])
    return paths


PATHS = _paths()


def flat_entry(topic: Topic, i: int, repeat: str | None = None, value: str = '"SELL"') -> list[bytes]:
    """A valid entry of ``topic`` as Redis sends it, with ``repeat`` given a second time."""
    fields = encode_field_map({**valid_values(topic, i), "api_version": "v1.0"})
    flat = [part.encode() for pair in fields.items() for part in pair]
    if repeat is not None:
        flat += [repeat.encode(), value.encode()]
    return flat


def test_fields_of_pairs__a_plain_dict_unless_a_name_repeats() -> None:
    assert type(fields_of_pairs([(b"a", b"1"), (b"b", b"2")])) is dict
    repeated = fields_of_flat([b"side", b'"BUY"', b"price", b"1", b"side", b'"SELL"'])
    assert isinstance(repeated, RepeatedFields)
    assert repeated.repeated() == [b"side"]
    assert repeated.pairs == [(b"side", b'"BUY"'), (b"price", b"1"), (b"side", b'"SELL"')]


@pytest.mark.parametrize("path", list(PATHS))
@pytest.mark.parametrize("topic", list(Topic))
@given(
    data=st.data(),
    value=st.sampled_from(['"SELL"', '"BUY"', "1", "null", '"x"', "not json"]),
)
def test_every_path__refuses_an_entry_that_repeats_a_field_whatever_the_values(
    path: str, topic: Topic, data: st.DataObject, value: str
) -> None:
    names = [name.decode() for name in flat_entry(topic, 0)[::2]]
    repeat = data.draw(st.sampled_from(names))  # even a second copy of the same value
    fields = fields_of_flat(flat_entry(topic, 0, repeat, value))
    with pytest.raises(ContractError) as refused:
        PATHS[path].from_fields(topic, fields, entry_id=b"1767225600000-0")
    assert refused.value.reason == "duplicate_field"
    assert [tuple(e["loc"]) for e in refused.value.errors] == [(repeat,)]
    # The letter's raw bytes hold every pair, the repeated name twice, in the order sent.
    raw = refused.value.raw.decode()
    pairs = json.loads(raw, object_pairs_hook=lambda p: p)
    assert [name for name, _ in pairs].count(repeat) == 2
    assert tuple(pairs[-1]) == (repeat, value)


def test_a_letter_of_such_an_entry__stays_refused_when_replayed() -> None:
    # Read back with json.loads as a plain dict, the letter would become the last value's
    # message: `cdb dlq replay` would publish the SELL the consumer refused.
    fields = fields_of_flat(flat_entry(Topic.SIGNALS, 0, "side"))
    letter: Any = type("Letter", (), {"truncated": False, "stream_id": "1767225600000-0"})()
    letter.raw = field_map_bytes(fields)
    with pytest.raises(ContractError) as refused:
        redecode(CODECS["pydantic-lenient"], Topic.SIGNALS, letter)
    assert refused.value.reason == "duplicate_field"


async def _xadd_flat(redis: aioredis.Redis, stream: str, flat: list[bytes]) -> str:
    entry_id = await redis.execute_command("XADD", stream, "*", *flat)
    return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)


@pytest.mark.integration
@pytest.mark.parametrize("fenced", [False, True], ids=["plain", "fenced"])
async def test_consumer__dead_letters_the_repeating_entry_alone_and_handles_the_rest(
    redis_async: aioredis.Redis, keys: KeySpace, fenced: bool
) -> None:
    options: dict[str, Any] = {}
    if fenced:
        options["lease"] = keys.lease(ServiceName.EXECUTION, 0)
        await redis_async.set(options["lease"], "c1")
    consumer: StreamConsumer = orders_consumer(redis_async, keys, **options)
    await consumer.ensure_group()
    stream = keys.stream(Topic.ORDERS)
    good_1 = await _xadd_flat(redis_async, stream, flat_entry(Topic.ORDERS, 1))
    bad = await _xadd_flat(redis_async, stream, flat_entry(Topic.ORDERS, 2, "side"))
    good_3 = await _xadd_flat(redis_async, stream, flat_entry(Topic.ORDERS, 3))

    seen = Collector()
    while await consumer.poll_once(seen):
        pass

    assert seen.ids == [good_1, good_3]
    letters = await DeadLetters(redis_async, keys).read(Topic.ORDERS, count=10, newest_first=False)
    assert [(letter.stream_id, letter.reason) for letter in letters] == [(bad, "duplicate_field")]
    pairs = json.loads(letters[0].raw, object_pairs_hook=lambda p: p)
    assert [value for name, value in pairs if name == "side"] == ['"BUY"', '"SELL"']
    pending = await redis_async.xpending(stream, keys.group(ServiceName.EXECUTION))
    assert pending["pending"] == 0
