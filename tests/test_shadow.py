"""Shadow mode: both paths decode every message, the flag-selected one wins, differences are counted."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Iterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, field_serializer

from core.codec import Decoded, build_codec, codec_for, encode_field_map
from core.codec.shadow_sample import ShadowSampler
from core.domain.contracts import Side
from core.errors import ContractError
from core.logging import configure_logging
from core.metrics import ServiceMetrics
from core.redis import Publisher
from core.topics import CodecPath, KeySpace, Profile, ServiceName, Topic
from core.versions.convert import convert
from core.versions.declaration import known_versions
from migration.legacy_codec import LegacyCodec
from migration.shadow import DECODE_FIELD, ShadowCodec, diff_values, same_value
from migration.shadow_plain import plain_fields, same_plain
from tests.ops_helpers import live_service, service_settings
from tests.strategies import contract_messages
from tests.transport_helpers import BASE_MS, consume_until, make_messages, valid_values
from tests.versions_helpers import order, trade

PYDANTIC = build_codec(CodecPath.PYDANTIC, Profile.LENIENT)
LEGACY = build_codec(CodecPath.LEGACY)


class VolumeDoublingLegacyCodec(LegacyCodec):
    """Test only: a legacy path that reads ``volume`` twice as large (a deliberate decode bug)."""

    def from_fields(self, topic: Topic, fields: Any, *, entry_id: Any = None) -> Decoded:
        decoded = super().from_fields(topic, fields, entry_id=entry_id)
        decoded.message.volume *= 2
        return decoded


class ExplodingCodec(LegacyCodec):
    """Test only: a shadow codec with a bug that raises something other than ContractError."""

    def from_fields(self, topic: Topic, fields: Any, *, entry_id: Any = None) -> Decoded:
        raise RuntimeError("shadow bug")


@pytest.fixture
def log_buffer() -> Iterator[io.StringIO]:
    buffer = io.StringIO()
    configure_logging("INFO", stream=buffer)
    yield buffer
    configure_logging()


def _fields(topic: Topic, i: int = 0, **changes: Any) -> dict[str, str]:
    values = {**valid_values(topic, i), "api_version": "v1.0", **changes}
    return encode_field_map({k: v for k, v in values.items() if v is not ...})


@pytest.mark.integration
async def test_shadow__stream_with_one_field_decoded_differently_reports_exactly_that_field(
    redis_async: aioredis.Redis, keys: KeySpace
) -> None:
    publisher = Publisher(redis_async, PYDANTIC, keys=keys, service=ServiceName.WS)
    await publisher.publish_many(Topic.MARKET_DATA, make_messages(PYDANTIC, Topic.MARKET_DATA, 20))
    metrics = ServiceMetrics(ServiceName.SIGNAL)
    codec = ShadowCodec(PYDANTIC, VolumeDoublingLegacyCodec(65_536), on_compare=metrics.count_shadow)
    handled = await consume_until(
        redis_async, keys, codec, lambda h: len(h.messages) == 20, instance="shadow-1", metrics=metrics
    )

    assert codec.mismatch_counts() == {"market_data": {"volume": 20}}
    snapshot = metrics.snapshot()
    assert snapshot["shadow_by_field"] == {"market_data.volume": 20}
    assert (snapshot["shadow_compared"], snapshot["shadow_mismatches"]) == (20, 20)
    # The service acted on the primary (Pydantic) result, not on the mangled one.
    assert [m.volume for m in handled.messages] == [
        valid_values(Topic.MARKET_DATA, i)["volume"] for i in range(20)
    ]


@pytest.mark.integration
async def test_shadow__mismatches_reach_live_status_through_the_service_context(
    redis_async: aioredis.Redis, keys: KeySpace
) -> None:
    """A producer sending ``"api_version": null``: lenient Pydantic fills it, legacy refuses."""
    settings_ = service_settings(
        ServiceName.SIGNAL, keys, "sig-shadow", use_pydantic_contracts=True, contract_shadow=True
    )
    for i in range(3):
        await redis_async.xadd(
            keys.stream(Topic.MARKET_DATA), _fields(Topic.MARKET_DATA, i, api_version=None)
        )
    async with live_service(redis_async, settings_) as ctx:
        assert isinstance(ctx.codec, ShadowCodec)
        async with asyncio.timeout(10):
            while ctx.live_state().counts["messages_ok"] < 3:
                await asyncio.sleep(0.02)
        counts = ctx.live_state().counts
    assert counts["shadow_by_field"] == {f"market_data.{DECODE_FIELD}": 3}
    assert counts["shadow_compared"] == 3
    assert counts["defaults_by_field"] == {"api_version": 3}


def test_shadow__primary_refusing_raises_the_primary_error_and_counts_decode() -> None:
    codec = ShadowCodec(build_codec(CodecPath.PYDANTIC, Profile.STRICT), LEGACY)
    without_version = _fields(Topic.MARKET_DATA, api_version=...)
    with pytest.raises(ContractError) as raised:
        codec.from_fields(Topic.MARKET_DATA, without_version)
    assert (raised.value.path, raised.value.profile, raised.value.reason) == ("pydantic", "strict", "missing")
    assert codec.mismatch_counts() == {"market_data": {DECODE_FIELD: 1}}


def test_shadow__both_refusing_is_agreement_not_a_mismatch() -> None:
    codec = ShadowCodec(PYDANTIC, LEGACY)
    with pytest.raises(ContractError):
        codec.from_fields(Topic.MARKET_DATA, _fields(Topic.MARKET_DATA, symbol=...))
    assert codec.mismatch_counts() == {}
    assert codec.compared[Topic.MARKET_DATA] == 1


def _later(topic: Topic, version: str, message: Any) -> dict[str, str]:
    """``message`` (v1.0) as a stream entry of ``version``, as a producer writing it sends it."""
    return encode_field_map(convert(topic, message, version).model_dump(mode="json"))


@pytest.mark.parametrize("service", [ServiceName.SIGNAL, ServiceName.EXECUTION])
def test_shadow__a_later_version_than_legacy_reads_is_counted_as_such_not_as_a_mismatch(
    service: ServiceName,
) -> None:
    """The Pydantic path reads v2.0 market data and v1.1/v2.0 orders; the legacy path cannot.
    That is no disagreement between the paths: it is counted by version, never as ``<decode>``."""
    metrics = ServiceMetrics(service)
    settings_ = service_settings(
        service, KeySpace("t:"), "shadow-1", use_pydantic_contracts=True, contract_shadow=True
    )
    codec = codec_for(settings_, on_shadow=metrics.count_shadow)
    topic, message = (
        (Topic.MARKET_DATA, trade()) if service is ServiceName.SIGNAL else (Topic.ORDERS, order())
    )
    versions = [v for v in known_versions(topic) if v != "v1.0"]
    for version in versions:
        assert codec.from_fields(topic, _later(topic, version, message)).message == message

    assert isinstance(codec, ShadowCodec)
    assert codec.mismatch_counts() == {}
    assert codec.later_version_counts() == {topic.value: dict.fromkeys(versions, 1)}
    snapshot = metrics.snapshot()
    assert (snapshot["shadow_compared"], snapshot["shadow_mismatches"]) == (len(versions), 0)
    assert snapshot["shadow_later_version"] == len(versions)
    assert snapshot["shadow_later_by_version"] == {f"{topic.value}.{v}": 1 for v in versions}


def test_shadow__a_crashing_shadow_codec_is_counted_never_raised() -> None:
    codec = ShadowCodec(PYDANTIC, ExplodingCodec(65_536))
    decoded = codec.from_fields(Topic.ORDERS, _fields(Topic.ORDERS))
    assert decoded.message.order_id == "ord-0"
    assert codec.mismatch_counts() == {"orders": {DECODE_FIELD: 1}}


def test_shadow__fields_only_one_side_has_are_not_mismatches() -> None:
    """Legacy signals, orders and results lack api_version/timestamp; market data lacks trade_id."""
    codec = ShadowCodec(PYDANTIC, LEGACY)
    for topic in Topic:
        codec.from_fields(topic, _fields(topic, 3))  # i=3: a trade_id on market data
        codec.decode(topic, json.dumps(valid_values(topic, 3)).encode())
    assert codec.mismatch_counts() == {}
    assert sum(codec.compared.values()) == 8


def test_shadow__legacy_primary_acts_on_the_legacy_message() -> None:
    codec = ShadowCodec(LEGACY, PYDANTIC)
    decoded = codec.from_fields(Topic.SIGNALS, _fields(Topic.SIGNALS))
    assert type(decoded.message).__name__ == "Signal"
    assert (codec.path, codec.profile) == (CodecPath.LEGACY, None)


def test_shadow__first_diffs_are_logged_with_both_values_then_only_counted(log_buffer: io.StringIO) -> None:
    codec = ShadowCodec(PYDANTIC, VolumeDoublingLegacyCodec(65_536), log_limit=2)
    for i in range(5):
        codec.from_fields(Topic.MARKET_DATA, _fields(Topic.MARKET_DATA, i))
    events = [json.loads(line) for line in log_buffer.getvalue().splitlines()]
    logged = [e for e in events if e["event"] == "shadow.mismatch"]
    assert [(e["field"], e["occurrence"]) for e in logged] == [("volume", 1), ("volume", 2)]
    volume = valid_values(Topic.MARKET_DATA, 0)["volume"]
    assert (logged[0]["primary"], logged[0]["shadow"]) == (repr(volume), repr(volume * 2))
    assert codec.mismatch_counts() == {"market_data": {"volume": 5}}


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (0.1, 0.1 * (1 + 1e-13)),  # float formatting: within rel 1e-12
        (5, 5.0),
        (0.0, 1e-13),  # near zero: within abs 1e-12
        (Side.BUY, "BUY"),  # enum vs str, equal by value
        (None, None),
        ({"a": [1, 2.0]}, {"a": [1.0, 2]}),
    ],
)
def test_same_value__formatting_differences_are_equal(a: Any, b: Any) -> None:
    assert same_value(a, b)
    assert same_value(b, a)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (0.1, 0.1 * (1 + 1e-9)),
        (True, 1),  # a bool is never a number
        ("1", 1),
        (None, 0.0),
        (Side.BUY, "SELL"),
        ([1, 2], [1, 2, 3]),
    ],
)
def test_same_value__real_differences_are_not_equal(a: Any, b: Any) -> None:
    assert not same_value(a, b)
    assert not same_value(b, a)


def test_diff_values__compares_only_the_fields_both_sides_have() -> None:
    diffs = diff_values({"price": 1.0, "timestamp": 5, "side": "BUY"}, {"price": 2.0, "side": "BUY"})
    assert diffs == [("price", 1.0, 2.0)]


@pytest.mark.parametrize("pydantic_on", [True, False])
def test_codec_for__shadow_flag_wraps_the_flag_selected_codec_with_the_other_path(pydantic_on: bool) -> None:
    from core.settings import ServiceSettings

    flags = {"use_pydantic_contracts": pydantic_on, "contract_shadow": True}
    codec = codec_for(ServiceSettings.load(ServiceName.RISK, environ={}, overrides=flags))
    assert isinstance(codec, ShadowCodec)
    expected = (
        (CodecPath.PYDANTIC, CodecPath.LEGACY) if pydantic_on else (CodecPath.LEGACY, CodecPath.PYDANTIC)
    )
    assert (codec.primary.path, codec.shadow.path) == expected
    assert codec.path is expected[0]


def test_codec_for__shadow_off_is_the_plain_codec() -> None:
    from core.settings import ServiceSettings

    codec = codec_for(ServiceSettings.load(ServiceName.RISK, environ={}))
    assert not isinstance(codec, ShadowCodec)


@settings(max_examples=40, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), topic=st.sampled_from(list(Topic)))
def test_shadow__any_valid_v1_message_decodes_the_same_on_both_paths(
    data: st.DataObject, topic: Topic
) -> None:
    message = data.draw(contract_messages(topic))
    codec = ShadowCodec(PYDANTIC, LEGACY)
    codec.from_fields(topic, PYDANTIC.to_fields(topic, message))
    codec.decode(topic, PYDANTIC.encode(topic, message))
    assert codec.mismatch_counts() == {}


class ChangingLegacyCodec(LegacyCodec):
    """Test only: a legacy path that, once ``change`` is set, alters one field after decoding."""

    change: tuple[str, Any] | None = None

    def from_fields(self, topic: Topic, fields: Any, *, entry_id: Any = None) -> Decoded:
        decoded = super().from_fields(topic, fields, entry_id=entry_id)
        if self.change is not None:
            name, value = self.change
            setattr(decoded.message, name, value(getattr(decoded.message, name)))
        return decoded


@pytest.mark.parametrize(
    ("topic", "field", "value", "differs"),
    [
        (Topic.MARKET_DATA, "volume", lambda v: v * (1 + 1e-9), True),
        (Topic.MARKET_DATA, "side", lambda v: "SELL" if v == "BUY" else "BUY", True),
        (Topic.MARKET_DATA, "price", lambda v: float("inf"), True),
        (Topic.MARKET_DATA, "price", lambda v: float("nan"), True),
        (Topic.MARKET_DATA, "symbol", lambda v: v.lower(), True),
        (Topic.ORDER_RESULTS, "simulated", int, True),  # True vs 1: a bool is never a number
        (Topic.ORDER_RESULTS, "reason", lambda v: "", True),  # None vs ""
        (Topic.ORDERS, "quantity", lambda v: v * (1 + 1e-14), False),  # float formatting
        (Topic.ORDER_RESULTS, "fee", lambda v: int(v) if v == int(v) else v, False),  # 0 vs 0.0
    ],
)
def test_shadow__the_quick_agreement_check_never_hides_a_difference(
    topic: Topic, field: str, value: Any, differs: bool
) -> None:
    shadow = ChangingLegacyCodec(65_536)
    codec = ShadowCodec(PYDANTIC, shadow)
    codec.from_fields(topic, _fields(topic, 0))  # the first of a pair of classes: compared in full
    shadow.change = (field, value)
    for i in range(1, 4):  # then the quick check runs first
        codec.from_fields(topic, _fields(topic, i))
    assert codec.mismatch_counts() == ({topic.value: {field: 3}} if differs else {})
    assert codec.compared[topic] == 4


_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-1, max_value=2),  # small: equal to booleans and floats often
    st.integers(),
    st.sampled_from([0.0, 1.0, -0.0, 2.0, float("inf"), float("-inf"), float("nan")]),
    st.floats(),
    st.text(max_size=3),
    st.sampled_from(["BUY", "SELL", ""]),
    st.sampled_from(Side),
)


@settings(max_examples=500)
@given(a=_VALUES, b=_VALUES)
def test_same_plain__only_ever_says_same_where_the_comparison_rules_do(a: Any, b: Any) -> None:
    if same_plain(a, b):
        assert same_value(a, b)
        assert same_value(b, a)


def test_same_plain__decides_the_common_cases() -> None:
    for a, b in [
        ("BTC/USDT", "BTC/USDT"),
        (Side.BUY, "BUY"),
        ("SELL", Side.SELL),
        (None, None),
        (0.5, 0.5),
        (7, 7),
    ]:
        assert same_plain(a, b)
    for a, b in [(True, 1), (5, 5.0), (float("inf"), float("inf")), (Side.BUY, "SELL"), ([1], [1])]:
        assert not same_plain(a, b)  # left to the full comparison


def test_plain_fields__only_classes_whose_plain_form_is_their_attributes_get_the_quick_check() -> None:
    topic = Topic.MARKET_DATA
    mine = PYDANTIC.from_fields(topic, _fields(topic, 0)).message
    theirs = LEGACY.from_fields(topic, _fields(topic, 0)).message
    plain_mine, plain_theirs = PYDANTIC.as_dict(topic, mine), LEGACY.as_dict(topic, theirs)
    names = plain_fields(mine, theirs, plain_mine, plain_theirs)
    assert names == ("symbol", "price", "volume", "side", "venue", "timestamp")  # the fields both have
    assert plain_fields(mine, theirs, plain_mine, {**plain_theirs, "price": 1.0}) is None  # not the attribute
    assert plain_fields(mine, theirs, plain_mine, {**plain_theirs, "extra": 1}) is None  # not its fields

    class Rounded(BaseModel):
        price: float

        @field_serializer("price")
        def _round(self, value: float) -> float:
            return round(value)

    rounded = Rounded(price=1.0)
    assert plain_fields(rounded, theirs, rounded.model_dump(mode="json"), plain_theirs) is None


def test_shadow__encoding_and_building_are_the_primary_codec_s_own() -> None:
    codec = ShadowCodec(PYDANTIC, LEGACY)
    assert (codec.encode, codec.to_fields, codec.build, codec.as_dict) == (
        PYDANTIC.encode,
        PYDANTIC.to_fields,
        PYDANTIC.build,
        PYDANTIC.as_dict,
    )


@pytest.mark.parametrize("as_text", [False, True])
def test_shadow_sample__compares_exactly_the_entries_the_sampler_picks(as_text: bool) -> None:
    codec = ShadowCodec(PYDANTIC, VolumeDoublingLegacyCodec(65_536), sample=0.1)
    ids = [f"{BASE_MS + i}-{i % 3}" for i in range(1_000)]
    picked = [i for i in ids if ShadowSampler(0.1).take(i)]
    for n, entry_id in enumerate(ids):
        decoded = codec.from_fields(
            Topic.MARKET_DATA,
            _fields(Topic.MARKET_DATA, n),
            entry_id=entry_id if as_text else entry_id.encode(),
        )
        assert decoded.message.volume == valid_values(Topic.MARKET_DATA, n)["volume"]  # the primary's result
    assert 50 <= len(picked) <= 150
    assert codec.compared[Topic.MARKET_DATA] == len(picked)
    assert codec.mismatch_counts() == {
        "market_data": {"volume": len(picked)}
    }  # each compared one shows the bug


def test_shadow_sample__bodies_without_entry_ids_compare_every_tenth() -> None:
    codec = ShadowCodec(PYDANTIC, VolumeDoublingLegacyCodec(65_536), sample=0.1)
    for n in range(100):
        codec.decode(Topic.MARKET_DATA, json.dumps(valid_values(Topic.MARKET_DATA, n)).encode())
        codec.from_fields(Topic.MARKET_DATA, _fields(Topic.MARKET_DATA, n))
    assert codec.compared[Topic.MARKET_DATA] == 20
    assert codec.mismatch_counts() == {"market_data": {"volume": 20}}
