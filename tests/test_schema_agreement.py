"""The exported JSON Schemas and the codec accept and refuse the same payloads (issue 14, Build 8).

Each generated payload is a valid message with up to three fields replaced or removed, written
as JSON text (with number spellings Python's encoder never writes: ``1e309``, ``1.7e12``,
``NaN``). The codec decodes the text; ``jsonschema`` validates the same text read as JSON
numbers are written: RFC 8259 (``NaN``/``Infinity`` are not JSON: refused by the parser) and
exactly (a number with a fraction or exponent is a decimal, not an integer: the codec's
integer timestamps refuse ``1.0``/``1.7e12`` and so must the schema's ``"type": "integer"``).
Both profiles: strict (the contracts) and lenient (their variants, with a stream entry id).
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from pydantic import BaseModel

from core.codec import build_codec
from core.codec.registry import profile_models
from core.errors import ContractError
from core.schema import contract_schema
from core.topics import CodecPath, Profile, Topic
from tests.samples import VALID_MESSAGES
from tests.strategies import contract_values
from tests.support.raw_json import DELETE, REPLACEMENTS, Raw, dumps

ENTRY_ID = b"1767225600000-0"
MODELS: dict[Profile, dict[Topic, type[BaseModel]]] = {p: profile_models(p) for p in Profile}
VALIDATORS = {
    (profile, topic): Draft202012Validator(contract_schema(model))
    for profile, models in MODELS.items()
    for topic, model in models.items()
}
CODECS = {profile: build_codec(CodecPath.PYDANTIC, profile) for profile in Profile}


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON (RFC 8259)")


def _schema_accepts(profile: Profile, topic: Topic, raw: bytes) -> bool:
    try:
        document = json.loads(raw, parse_float=Decimal, parse_constant=_no_constant)
    except ValueError:
        return False
    return bool(VALIDATORS[(profile, topic)].is_valid(document))


def _codec_accepts(profile: Profile, topic: Topic, raw: bytes) -> bool:
    try:
        CODECS[profile].decode(topic, raw, entry_id=ENTRY_ID)
    except ContractError:
        return False
    return True


@settings(max_examples=400, deadline=None)
@given(
    data=st.data(),
    topic=st.sampled_from(list(Topic)),
    profile=st.sampled_from(list(Profile)),
    changes=st.integers(min_value=0, max_value=3),
)
def test_schema_and_codec__agree_on_generated_payloads(
    data: st.DataObject, topic: Topic, profile: Profile, changes: int
) -> None:
    obj: dict[str, Any] = data.draw(contract_values(topic))
    names = sorted(MODELS[Profile.STRICT][topic].model_fields)
    for _ in range(changes):
        name = data.draw(st.sampled_from(names))
        value = data.draw(REPLACEMENTS)
        if value is DELETE:
            obj.pop(name, None)
        else:
            obj[name] = value
    raw = dumps(obj)
    codec, schema = _codec_accepts(profile, topic, raw), _schema_accepts(profile, topic, raw)
    assert codec == schema, (raw, "codec accepts" if codec else "schema accepts")


CASES = {
    "nan_price": (Topic.MARKET_DATA, "price", Raw("NaN")),
    "infinite_price": (Topic.MARKET_DATA, "price", Raw("1e309")),
    "infinite_volume": (Topic.MARKET_DATA, "volume", Raw("1e309")),
    "infinite_fee": (Topic.ORDER_RESULTS, "fee", Raw("1e309")),
    "infinite_quantity": (Topic.ORDERS, "quantity", Raw("1e309")),
    "timestamp_exponent": (Topic.SIGNALS, "timestamp", Raw("1.7e12")),
    "timestamp_fraction": (Topic.SIGNALS, "timestamp", Raw("1700000000000.0")),
    "timestamp_seconds": (Topic.ORDERS, "timestamp", 1_767_225_600),
}


@pytest.mark.parametrize("profile", list(Profile))
@pytest.mark.parametrize("case", list(CASES))
def test_schema_and_codec__both_refuse_non_finite_numbers_and_non_integer_timestamps(
    case: str, profile: Profile
) -> None:
    topic, name, value = CASES[case]
    raw = dumps({**VALID_MESSAGES[topic], name: value})
    assert not _codec_accepts(profile, topic, raw)
    assert not _schema_accepts(profile, topic, raw)


@pytest.mark.parametrize("status", ["REJECTED", "CANCELLED"])
@pytest.mark.parametrize("fill", [{"filled_quantity": 0.5}, {"average_price": 87_000.0}])
def test_rejected_or_cancelled_result_with_a_fill__refused_by_schema_codec_and_legacy_guard(
    status: str, fill: dict[str, Any]
) -> None:
    base = {
        **VALID_MESSAGES[Topic.ORDER_RESULTS],
        "status": status,
        "filled_quantity": 0.0,
        "average_price": None,
    }
    for values, ok in ((base, True), ({**base, **fill}, False)):
        raw = dumps(values)
        for profile in Profile:
            assert _codec_accepts(profile, Topic.ORDER_RESULTS, raw) is ok
            assert _schema_accepts(profile, Topic.ORDER_RESULTS, raw) is ok
        legacy = build_codec(CodecPath.LEGACY)
        if ok:
            legacy.decode(Topic.ORDER_RESULTS, raw)
            continue
        with pytest.raises(ContractError) as info:
            legacy.decode(Topic.ORDER_RESULTS, raw)
        assert info.value.reason == "value_error"
        assert "carries no fill" in info.value.errors[0]["msg"]
