"""The codec's fast paths decide exactly what the field-by-field path decides.

``from_fields`` joins a stream entry into one JSON document when every name is a plain
identifier and every value is free of JSON structure or one JSON scalar
(:func:`core.codec.fields.scan_fields`); the lenient profile tries the strict contract
first when ``api_version`` and ``timestamp`` are present; ``encode_field_map`` formats
scalars without ``JSONEncoder``. These tests
hold each shortcut to the general path it replaces: same message, same defaults, same
refusal (error types and locations).

The reference is the same entry as text (``decode_responses=True`` form): text maps are
never joined, so they take the field-by-field path.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pydantic_core
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.codec import Codec, build_codec, decode_field_map, encode_field_map
from core.codec.fields import field_map_size, scan_fields
from core.domain.contracts import MarketDataV1
from core.errors import ContractError
from core.topics import CodecPath, Profile, Topic
from core.utils.clock import frozen
from tests.strategies import contract_messages, contract_values, json_values, legacy_values

CODECS: dict[str, Codec] = {
    "legacy": build_codec(CodecPath.LEGACY),
    "lenient": build_codec(CodecPath.PYDANTIC, Profile.LENIENT),
    "strict": build_codec(CodecPath.PYDANTIC, Profile.STRICT),
}
TOPICS = list(Topic)
LIMIT = 65_536
NOW_MS = 1_767_225_600_000
_REFERENCE_ENCODE = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode

identifiers = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,11}", fullmatch=True)
scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
scalars |= st.text(max_size=12)
awkward_scalars = st.sampled_from(
    ["\ud800", "\udfff x", "a\x00b", "\u2028", "-0", "1E400", "-1e-400", str(2**70), str(10**30)]
)
"""Text and numbers where two JSON parsers could disagree (lone surrogates, overflow, huge ints)."""


def _as_bytes(values: dict[str, Any]) -> dict[bytes, bytes]:
    return {k.encode(): json.dumps(v).encode() for k, v in values.items()}


def _as_text(fields: dict[bytes, bytes]) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in fields.items()}


def _outcome(codec: Codec, topic: Topic, fields: Any) -> tuple[str, Any]:
    with frozen(NOW_MS):
        try:
            decoded = codec.from_fields(topic, fields)
        except ContractError as exc:
            return "refused", sorted((e["type"], e["loc"]) for e in exc.errors)
    return "decoded", (decoded.message, decoded.defaulted)


def _assert_paths_agree(topic: Topic, fields: dict[bytes, bytes]) -> None:
    for name, codec in CODECS.items():
        fast, general = _outcome(codec, topic, fields), _outcome(codec, topic, _as_text(fields))
        assert fast == general, (name, fields)


# --- scan_fields ------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(values=st.dictionaries(identifiers, scalars, min_size=1, max_size=12))
def test_scan_fields__document_parses_to_what_field_by_field_decoding_returns(
    values: dict[str, Any],
) -> None:
    fields = _as_bytes(values)
    size, document = scan_fields(fields, LIMIT)
    assert document is not None
    assert json.loads(document) == decode_field_map(fields)
    assert size == field_map_size(fields)


@settings(max_examples=100, deadline=None)
@given(fields=st.dictionaries(st.binary(max_size=12), st.binary(max_size=24), max_size=8))
def test_scan_fields__size_is_the_wire_size_for_any_map(fields: dict[bytes, bytes]) -> None:
    assert scan_fields(fields, LIMIT)[0] == field_map_size(fields)


@pytest.mark.parametrize(
    "value", [b'1,"side":"SELL"', b'"BUY","side":"SELL"', b"[1]", b'{"a":1}', b'"a,b" 1', b'"\\" 1']
)
def test_scan_fields__value_with_structure_that_is_not_exactly_one_scalar_is_not_joined(
    value: bytes,
) -> None:
    fields = {b"side": b'"BUY"', b"price": value}
    assert scan_fields(fields, LIMIT)[1] is None


@pytest.mark.parametrize("value", [b'"a,b"', b'"x\\"y"', b'"\\u00e9:{}"', b'"[1]"'])
def test_scan_fields__string_holding_structure_or_escapes_is_still_joined(value: bytes) -> None:
    fields = {b"side": b'"BUY"', b"price": value}
    document = scan_fields(fields, LIMIT)[1]
    assert document is not None
    assert json.loads(document) == decode_field_map(fields)


unstructured = st.binary(max_size=10) | st.lists(
    st.sampled_from([b'"', b"1", b"-", b".", b"e", b"N", b"a", b"true", b" ", b"\t", b"\x00", b"\xc3"]),
    max_size=8,
).map(b"".join)
"""Values without ``,:[]{}`` (mostly): quotes, number and word pieces, blanks, NUL, broken UTF-8."""


@settings(max_examples=400, deadline=None)
@given(fields=st.dictionaries(identifiers.map(str.encode), unstructured, min_size=1, max_size=6))
def test_scan_fields__any_joined_document_that_parses_is_the_field_by_field_result(
    fields: dict[bytes, bytes],
) -> None:
    """Whatever the values, a document that parses (either parser) is what decoding field by
    field returns: no value can swallow or add a field, even with a stray quote."""
    document = scan_fields(fields, LIMIT)[1]
    if document is None:
        return
    for parse in (lambda d: json.loads(d.decode("utf-8")), pydantic_core.from_json):
        try:
            parsed = parse(document)
        except ValueError:
            continue  # the codecs then decode field by field
        assert parsed == decode_field_map(fields) or _nan_equal(parsed, decode_field_map(fields))


def _nan_equal(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return a.keys() == b.keys() and all(
        x == y or (isinstance(x, float) and isinstance(y, float) and math.isnan(x) and math.isnan(y))
        for x, y in zip(a.values(), b.values(), strict=True)
    )


@pytest.mark.parametrize("name", [b'price":1,"side', b"has space", b"1st", b"", "pr\u00efce".encode()])
def test_scan_fields__name_that_is_not_an_identifier_is_not_joined(name: bytes) -> None:
    assert scan_fields({b"side": b'"BUY"', name: b"1"}, LIMIT)[1] is None


def test_scan_fields__text_map_is_measured_in_utf8_bytes_and_not_joined() -> None:
    fields = {"reason": '"\U0001f680"'}
    assert scan_fields(fields, LIMIT) == (len("reason") + 6, None)


def test_scan_fields__oversized_map_is_measured_but_not_joined() -> None:
    fields = {b"reason": b'"' + b"x" * LIMIT + b'"'}
    size, document = scan_fields(fields, LIMIT)
    assert size == len(b"reason") + LIMIT + 2
    assert document is None


# --- from_fields: the joined document decides as the field-by-field path -----------------------


@pytest.mark.parametrize("codec_name", list(CODECS))
def test_from_fields__value_smuggling_a_field_is_refused_at_that_field(codec_name: str) -> None:
    """``"price": 1,"side":"SELL"`` must not become a price of 1 and a second side."""
    fields = _as_bytes({"api_version": "v1.0", "symbol": "BTC/USDT", "side": "BUY", "volume": 1.0})
    fields |= {b"venue": b'"mexc"', b"timestamp": str(NOW_MS).encode(), b"price": b'1,"side":"SELL"'}
    with pytest.raises(ContractError) as info:
        CODECS[codec_name].from_fields(Topic.MARKET_DATA, fields)
    assert info.value.reason == "json_invalid"
    assert info.value.errors[0]["loc"] == ("price",)


@pytest.mark.parametrize("codec_name", list(CODECS))
def test_from_fields__nested_unknown_field_still_decodes(codec_name: str) -> None:
    values = {"api_version": "v1.0", "symbol": "BTC/USDT", "price": 2.5, "volume": 1.0, "side": "BUY"}
    values |= {"venue": "mexc", "timestamp": NOW_MS, "extra": {"nested": [1, None]}}
    decoded = CODECS[codec_name].from_fields(Topic.MARKET_DATA, _as_bytes(values))
    assert decoded.message.price == 2.5


@settings(max_examples=150, deadline=None)
@given(data=st.data(), topic=st.sampled_from(TOPICS))
def test_from_fields__valid_messages_decode_the_same_on_both_paths(data: st.DataObject, topic: Topic) -> None:
    values = data.draw(contract_values(topic) | legacy_values(topic))
    _assert_paths_agree(topic, _as_bytes(values))


@settings(max_examples=200, deadline=None)
@given(data=st.data(), topic=st.sampled_from(TOPICS))
def test_from_fields__one_field_replaced_decides_the_same_on_both_paths(
    data: st.DataObject, topic: Topic
) -> None:
    values = data.draw(contract_values(topic))
    name = data.draw(st.sampled_from(sorted(values)))
    values[name] = data.draw(scalars | json_values)
    _assert_paths_agree(topic, _as_bytes(values))


@settings(max_examples=150, deadline=None)
@given(data=st.data(), topic=st.sampled_from(TOPICS))
def test_from_fields__awkward_scalar_text_decides_the_same_on_both_paths(
    data: st.DataObject, topic: Topic
) -> None:
    """Raw JSON text (not produced by json.dumps) where parsers could differ."""
    fields = _as_bytes(data.draw(contract_values(topic)))
    name = data.draw(st.sampled_from(sorted(fields)))
    raw = data.draw(awkward_scalars)
    fields[name] = raw.encode("utf-8", "surrogatepass") if raw.startswith(("-", "1")) else _quoted(raw)
    _assert_paths_agree(topic, fields)


@pytest.mark.parametrize(
    "raw",
    [b"NaN", b"-Infinity", b" 2.5", b"2.5 ", b"01", b"1.", b'"a', b'"BTC/USDT"x', b'"a""b"', b"tru", b""],
)
@pytest.mark.parametrize("name", ["price", "symbol", "timestamp"])
def test_from_fields__raw_text_that_is_no_strict_scalar_decides_the_same_on_both_paths(
    raw: bytes, name: str
) -> None:
    """Values the joined document now carries without the scalar pattern's say (no structure
    in them): parsed in the document or refused there and decoded field by field, the outcome
    is the field-by-field one."""
    values = {"api_version": "v1.0", "symbol": "BTC/USDT", "price": 2.5, "volume": 1.0, "side": "BUY"}
    fields = _as_bytes(values | {"venue": "mexc", "timestamp": NOW_MS})
    fields[name.encode()] = raw
    _assert_paths_agree(Topic.MARKET_DATA, fields)


def _quoted(text: str) -> bytes:
    # A JSON string written with \u escapes, as another producer might (lone surrogates included).
    return json.dumps(text, ensure_ascii=True).encode()


# --- the lenient profile's strict-first shortcut ----------------------------------------------


def test_lenient__complete_message_decodes_to_the_strict_class_with_nothing_defaulted() -> None:
    values = {"api_version": "v1.0", "symbol": "BTC/USDT", "price": 2.5, "volume": 1.0, "side": "BUY"}
    raw = json.dumps({**values, "venue": "mexc", "timestamp": NOW_MS}).encode()
    decoded = CODECS["lenient"].decode(Topic.MARKET_DATA, raw)
    assert type(decoded.message) is MarketDataV1
    assert decoded.defaulted == ()


def test_lenient__null_timestamp_next_to_api_version_is_still_filled_from_the_entry() -> None:
    """The strict-first shortcut fails on the null; the lenient variant then fills it."""
    values = {"api_version": "v1.0", "signal_id": "s", "symbol": "BTC/USDT", "side": "BUY", "price": 2.5}
    raw = json.dumps({**values, "strength": 0.5, "reason": "r", "timestamp": None}).encode()
    with frozen(NOW_MS):
        decoded = CODECS["lenient"].decode(Topic.SIGNALS, raw, entry_id=f"{NOW_MS + 5}-0")
    assert decoded.message.timestamp == NOW_MS + 5
    assert decoded.defaulted == ("timestamp",)


# --- encode_field_map formats exactly as JSONEncoder -------------------------------------------


@settings(max_examples=200, deadline=None)
@given(values=st.dictionaries(st.text(max_size=8), json_values, max_size=12))
def test_encode_field_map__writes_what_the_json_encoder_writes(values: dict[str, Any]) -> None:
    try:
        expected: Any = {k: _REFERENCE_ENCODE(v) for k, v in values.items()}
    except ValueError:  # an infinity somewhere: refused by both
        expected = ValueError
    try:
        written: Any = encode_field_map(values)
    except ValueError:
        written = ValueError
    assert written == expected


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf"), [1.0, float("nan")]])
def test_encode_field_map__refuses_non_finite_floats_anywhere(value: Any) -> None:
    with pytest.raises(ValueError, match="JSON"):
        encode_field_map({"price": value})


@settings(max_examples=100, deadline=None)
@given(data=st.data(), topic=st.sampled_from(TOPICS))
def test_pydantic_to_fields__writes_what_encoding_model_dump_writes(
    data: st.DataObject, topic: Topic
) -> None:
    """The contracts are encoded from their attributes: the same text as from model_dump(mode="json")."""
    built = data.draw(contract_messages(topic))
    with frozen(NOW_MS):  # and one made by the lenient profile (model_construct, defaults filled)
        legacy = json.dumps(data.draw(legacy_values(topic))).encode()
        filled = CODECS["lenient"].decode(topic, legacy, entry_id=f"{NOW_MS}-0").message
    for message in (built, filled):
        expected = list(encode_field_map(message.model_dump(mode="json")).items())
        for name in ("lenient", "strict"):
            assert list(CODECS[name].to_fields(topic, message).items()) == expected  # same order too
