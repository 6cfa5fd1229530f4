"""Round trips of valid messages through both wire forms, on every path and across paths.

Wire forms: the Pub/Sub JSON body (``encode``/``decode``) and the Redis Stream field
map (``to_fields``/``from_fields``). Paths: legacy, Pydantic lenient, Pydantic strict.
Mixed versions are checked in both directions: a legacy producer read by the
lenient profile, and a Pydantic producer read by the legacy path.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.codec import Codec, build_codec
from core.topics import CodecPath, Profile, Topic
from core.utils.clock import frozen
from migration.legacy import MarketData, Order, OrderResult, Signal
from tests.strategies import LEGACY_FIELDS, contract_messages, legacy_values

FROZEN_MS = 1_767_225_600_000
TOPICS = list(Topic)
EXAMPLES = settings(max_examples=100, deadline=None)

LEGACY_CLASSES = {
    Topic.MARKET_DATA: MarketData,
    Topic.SIGNALS: Signal,
    Topic.ORDERS: Order,
    Topic.ORDER_RESULTS: OrderResult,
}

LEGACY = build_codec(CodecPath.LEGACY)
PYDANTIC = {profile: build_codec(CodecPath.PYDANTIC, profile) for profile in Profile}
LENIENT = PYDANTIC[Profile.LENIENT]


def _json_then_fields(codec: Codec, topic: Topic, message: Any) -> tuple[Any, Any]:
    """Decode ``message`` from both of its wire forms."""
    via_json = codec.decode(topic, codec.encode(topic, message))
    via_fields = codec.from_fields(topic, codec.to_fields(topic, message))
    return via_json, via_fields


@pytest.mark.parametrize("profile", list(Profile))
@pytest.mark.parametrize("topic", TOPICS)
@EXAMPLES
@given(data=st.data())
def test_pydantic_codec__round_trips_valid_messages_through_both_wire_forms(
    topic: Topic, profile: Profile, data: st.DataObject
) -> None:
    message = data.draw(contract_messages(topic))
    codec = PYDANTIC[profile]
    via_json, via_fields = _json_then_fields(codec, topic, message)
    assert via_json.message == message
    assert via_fields.message == message
    assert type(via_json.message) is type(message)
    assert via_json.defaulted == via_fields.defaulted == ()


@pytest.mark.parametrize("topic", TOPICS)
@EXAMPLES
@given(data=st.data())
def test_pydantic_codec__field_map_is_one_text_field_per_contract_field(
    topic: Topic, data: st.DataObject
) -> None:
    message = data.draw(contract_messages(topic))
    fields = LENIENT.to_fields(topic, message)
    assert set(fields) == set(type(message).model_fields)
    assert all(isinstance(v, str) for v in fields.values())


@pytest.mark.parametrize("topic", TOPICS)
@EXAMPLES
@given(data=st.data())
def test_legacy_codec__round_trips_legacy_messages_through_both_wire_forms(
    topic: Topic, data: st.DataObject
) -> None:
    message = LEGACY_CLASSES[topic](**data.draw(legacy_values(topic)))
    via_json, via_fields = _json_then_fields(LEGACY, topic, message)
    assert via_json.message == message
    assert via_fields.message == message
    assert via_json.defaulted == via_fields.defaulted == ()


@pytest.mark.parametrize("topic", TOPICS)
@EXAMPLES
@given(data=st.data())
def test_lenient_codec__reads_legacy_producer_with_the_same_field_values(
    topic: Topic, data: st.DataObject
) -> None:
    values = data.draw(legacy_values(topic))
    legacy_message = LEGACY_CLASSES[topic](**values)
    entry_id = f"{FROZEN_MS + 17}-3"  # the stream entry's server time: what a filled timestamp takes
    with frozen(FROZEN_MS):
        via_json = LENIENT.decode(topic, LEGACY.encode(topic, legacy_message), entry_id=entry_id)
        via_fields = LENIENT.from_fields(topic, LEGACY.to_fields(topic, legacy_message), entry_id=entry_id)
    for decoded in (via_json, via_fields):
        dumped = LENIENT.as_dict(topic, decoded.message)
        assert {n: dumped[n] for n in LEGACY_FIELDS[topic]} == legacy_message.to_dict()
        assert dumped["api_version"] == "v1.0"
        if topic is Topic.MARKET_DATA:
            assert decoded.defaulted == ("api_version",)
            assert dumped["timestamp"] == values["timestamp"]
        else:
            assert decoded.defaulted == ("api_version", "timestamp")
            assert dumped["timestamp"] == FROZEN_MS + 17  # the entry's time, not the frozen clock


@pytest.mark.parametrize("profile", list(Profile))
@pytest.mark.parametrize("topic", TOPICS)
@EXAMPLES
@given(data=st.data())
def test_legacy_codec__reads_pydantic_producer_with_the_same_field_values(
    topic: Topic, profile: Profile, data: st.DataObject
) -> None:
    message = data.draw(contract_messages(topic))
    producer = PYDANTIC[profile]
    expected = {n: producer.as_dict(topic, message)[n] for n in LEGACY_FIELDS[topic]}
    via_json = LEGACY.decode(topic, producer.encode(topic, message))
    via_fields = LEGACY.from_fields(topic, producer.to_fields(topic, message))
    assert via_json.message.to_dict() == expected
    assert via_fields.message.to_dict() == expected


@pytest.mark.parametrize("topic", TOPICS)
@EXAMPLES
@given(data=st.data())
def test_legacy_from_dict__reads_pydantic_json_directly(topic: Topic, data: st.DataObject) -> None:
    """Mixed versions without the codec: the old service's own ``from_dict`` on new JSON."""

    message = data.draw(contract_messages(topic))
    legacy = LEGACY_CLASSES[topic].from_dict(json.loads(LENIENT.encode(topic, message)))
    assert legacy.to_dict() == {n: LENIENT.as_dict(topic, message)[n] for n in LEGACY_FIELDS[topic]}


@pytest.mark.parametrize("topic", TOPICS)
def test_codec_build__pydantic_path_adds_api_version_and_clock_timestamp(topic: Topic) -> None:
    values = {
        n: v
        for n, v in _sample(topic).items()
        if n not in ("api_version", "timestamp") and n in LEGACY_FIELDS[topic]
    }
    with frozen(FROZEN_MS):
        message = LENIENT.build(topic, values)
    assert message.api_version == "v1.0"
    assert message.timestamp == FROZEN_MS


@pytest.mark.parametrize("topic", TOPICS)
def test_codec_build__legacy_path_keeps_only_legacy_fields(topic: Topic) -> None:
    message = LEGACY.build(topic, _sample(topic))
    assert isinstance(message, LEGACY_CLASSES[topic])
    assert set(message.to_dict()) == set(LEGACY_FIELDS[topic])


def _sample(topic: Topic) -> dict[str, Any]:
    from cdb.cli.demo import SAMPLES

    return {"api_version": "v1.0", "timestamp": FROZEN_MS, **SAMPLES[topic]}
