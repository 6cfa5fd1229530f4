"""The Redis Stream field-map encoding against the real Redis server.

One stream field per message field, each value JSON-encoded, so ``None``, booleans,
unicode, integers of any size and floats survive XADD/XRANGE exactly; a plain
``xadd(stream, model.model_dump())`` does not (the seed's bug).
"""

from __future__ import annotations

from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.codec import build_codec, decode_field_map, encode_field_map
from core.domain.contracts import OrderResultV1
from core.topics import CodecPath, KeySpace, Profile, Topic
from tests.strategies import contract_messages

pytestmark = pytest.mark.integration

REASON = "Kurs fällt – 止损 🚀"
AWKWARD: dict[str, Any] = {
    "nothing": None,
    "yes": True,
    "no": False,
    "reason": REASON,
    "big": 2**70,
    "negative_big": -(2**70),
    "tiny": 1e-12,
    "long_float": 123456789.123456789,
    "zero": 0.0,
    "empty": "",
    "looks_like_json": '{"a": 1}',
    "looks_like_null": "null",
    "nested": {"levels": [1, 2.5, None, True, "ü"]},
}
"""Values a plain XADD mangles or refuses."""

RESULT = OrderResultV1.model_validate(
    {
        "api_version": "v1.0",
        "order_id": "ord-1",
        "symbol": "BTC/USDT",
        "side": "SELL",
        "status": "REJECTED",
        "filled_quantity": 0.0,
        "average_price": None,
        "fee": 1e-12,
        "reason": REASON,
        "simulated": True,
        "timestamp": 1_767_225_600_000,
    }
)


def _round_trip(client: redis.Redis, stream: str, fields: dict[str, str]) -> dict[bytes, bytes]:
    entry_id = client.xadd(stream, fields)  # type: ignore[arg-type]
    [(read_id, read)] = client.xrange(stream, min=entry_id, max=entry_id)
    assert read_id == entry_id
    return read  # type: ignore[no-any-return]


def test_field_map__awkward_values_survive_the_real_redis(redis_sync: redis.Redis, keys: KeySpace) -> None:
    read = _round_trip(redis_sync, keys.stream(Topic.SIGNALS), encode_field_map(AWKWARD))
    decoded = decode_field_map(read)
    assert decoded == AWKWARD
    assert decoded["yes"] is True
    assert decoded["no"] is False
    assert decoded["nothing"] is None
    assert decoded["big"] == 2**70
    assert decoded["long_float"] == 123456789.123456789


def test_field_map__values_stay_readable_in_redis(redis_sync: redis.Redis, keys: KeySpace) -> None:
    """What ``redis-cli XRANGE`` shows: plain JSON text, unicode not escaped."""
    read = _round_trip(redis_sync, keys.stream(Topic.SIGNALS), encode_field_map(AWKWARD))
    assert read[b"reason"].decode("utf-8") == f'"{REASON}"'
    assert read[b"nothing"] == b"null"
    assert read[b"yes"] == b"true"
    assert read[b"big"] == str(2**70).encode()


def test_field_map__decodes_from_a_client_with_decode_responses(redis_url: str, keys: KeySpace) -> None:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        read = _round_trip(client, keys.stream(Topic.SIGNALS), encode_field_map(AWKWARD))
    finally:
        client.close()
    assert decode_field_map(read) == AWKWARD


def test_field_map__refuses_nan_instead_of_writing_it() -> None:
    with pytest.raises(ValueError, match="JSON"):
        encode_field_map({"price": float("nan")})


@pytest.mark.parametrize(
    ("path", "profile"), [(CodecPath.PYDANTIC, p) for p in Profile] + [(CodecPath.LEGACY, None)]
)
def test_codec_fields__contract_with_none_bool_unicode_survive_the_real_redis(
    redis_sync: redis.Redis, keys: KeySpace, path: CodecPath, profile: Profile | None
) -> None:
    codec = build_codec(path, profile or Profile.LENIENT)
    message = codec.build(Topic.ORDER_RESULTS, RESULT.model_dump(mode="json"))
    read = _round_trip(
        redis_sync, keys.stream(Topic.ORDER_RESULTS), codec.to_fields(Topic.ORDER_RESULTS, message)
    )
    decoded = codec.from_fields(Topic.ORDER_RESULTS, read)
    assert decoded.message == message
    assert decoded.message.reason == REASON
    assert decoded.message.average_price is None
    assert decoded.message.simulated is True


def test_plain_xadd_of_model_dump__fails_on_none_and_bool(redis_sync: redis.Redis, keys: KeySpace) -> None:
    """The seed report's ``redis.xadd(stream, model.model_dump())`` cannot write this message."""
    with pytest.raises(redis.DataError):
        redis_sync.xadd(keys.stream(Topic.ORDER_RESULTS), RESULT.model_dump())  # type: ignore[arg-type]
    assert redis_sync.xlen(keys.stream(Topic.ORDER_RESULTS)) == 0


def test_plain_xadd_of_json_dump__loses_types(redis_sync: redis.Redis, keys: KeySpace) -> None:
    """Even with None/bool removed, a plain XADD turns every value into an untyped string."""
    values = {
        k: v for k, v in RESULT.model_dump(mode="json").items() if v is not None and not isinstance(v, bool)
    }
    read = _round_trip(redis_sync, keys.stream(Topic.ORDER_RESULTS), values)
    assert read[b"fee"] == b"1e-12"
    assert read[b"timestamp"] == b"1767225600000"
    assert not isinstance(read[b"timestamp"], int)


@pytest.mark.parametrize("topic", list(Topic))
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_codec_fields__random_valid_messages_survive_the_real_redis(
    redis_sync: redis.Redis, keys: KeySpace, topic: Topic, data: st.DataObject
) -> None:
    message = data.draw(contract_messages(topic))
    for codec in (
        build_codec(CodecPath.PYDANTIC, Profile.STRICT),
        build_codec(CodecPath.PYDANTIC, Profile.LENIENT),
    ):
        read = _round_trip(redis_sync, keys.stream(topic), codec.to_fields(topic, message))
        assert codec.from_fields(topic, read).message == message
