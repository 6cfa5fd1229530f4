"""The exported JSON Schemas agree with the codecs, checked by an independent validator.

``jsonschema`` (not Pydantic) validates real encoded messages: Pydantic-encoded
ones against the strict schema, legacy-encoded ones against the lenient schema
(and not the strict one), and the bad inputs the codec refuses are refused by
the schemas too. The committed export must equal a fresh one.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.codec import CONTRACTS, build_codec
from core.codec.registry import profile_models
from core.errors import ContractError
from core.schema import contract_schema, default_contracts_dir, exported_files, exported_models, stale_exports
from core.topics import CodecPath, Profile, Topic
from core.versions.declaration import VERSIONS
from tests.samples import SAMPLE_TS, VALID_MESSAGES, valid_message
from tests.strategies import contract_values, legacy_values

TS = SAMPLE_TS

VALID = {**VALID_MESSAGES, Topic.ORDER_RESULTS: valid_message(Topic.ORDER_RESULTS, average_price=87_000.0)}

STRICT = build_codec(CodecPath.PYDANTIC, Profile.STRICT)
LEGACY = build_codec(CodecPath.LEGACY)


def _validator(schema: dict[str, Any]) -> jsonschema.Draft202012Validator:
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


STRICT_SCHEMAS = {t: _validator(contract_schema(m)) for t, m in CONTRACTS.items()}
LENIENT_SCHEMAS = {t: _validator(contract_schema(m)) for t, m in profile_models(Profile.LENIENT).items()}


def _accepts(validator: jsonschema.Draft202012Validator, doc: Any) -> bool:
    return not list(validator.iter_errors(doc))


def test_schema_export__committed_files_match_a_fresh_export() -> None:
    stale = stale_exports(default_contracts_dir())
    assert not stale, f"contracts/ is out of date ({', '.join(stale)}): run `cdb schema export` and commit"


def test_schema_export__covers_the_strict_and_lenient_model_of_every_topic() -> None:
    names = set(exported_models())
    for model in CONTRACTS.values():
        assert {model.__name__, f"{model.__name__}Lenient"} <= names
    unversioned = {f for f in exported_files() if not f.startswith("versions/")}  # tests/test_versions.py
    assert {f"json-schema/{n}.json" for n in names} | {"asyncapi.json"} == unversioned


def test_schema_export__asyncapi_states_each_version_as_its_versions_file_does() -> None:
    files = exported_files()
    asyncapi = json.loads(files["asyncapi.json"])["components"]["schemas"]
    for topic, declared in VERSIONS.items():
        for version in declared.versions:
            own = json.loads(files[f"versions/{topic.value}/{version}.json"])
            name = declared.model(version).__name__
            for part in ("required", "allOf", "x-cdb-changes"):
                assert asyncapi[name].get(part) == own.get(part), (name, part)
            assert asyncapi[name]["properties"]["api_version"]["const"] == version


@pytest.mark.parametrize("topic", list(Topic))
def test_schema_export__every_schema_is_a_valid_2020_12_schema(topic: Topic) -> None:
    schema = contract_schema(CONTRACTS[topic])
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)


@pytest.mark.parametrize("topic", list(Topic))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_strict_schema__accepts_pydantic_encoded_messages(topic: Topic, data: st.DataObject) -> None:
    message = STRICT.build(topic, data.draw(contract_values(topic)))
    doc = json.loads(STRICT.encode(topic, message))
    assert _accepts(STRICT_SCHEMAS[topic], doc), list(STRICT_SCHEMAS[topic].iter_errors(doc))
    assert _accepts(LENIENT_SCHEMAS[topic], doc)


@pytest.mark.parametrize("topic", list(Topic))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_lenient_schema__accepts_legacy_encoded_messages_the_strict_one_refuses(
    topic: Topic, data: st.DataObject
) -> None:
    message = LEGACY.build(topic, data.draw(legacy_values(topic)))
    doc = json.loads(LEGACY.encode(topic, message))
    assert _accepts(LENIENT_SCHEMAS[topic], doc), list(LENIENT_SCHEMAS[topic].iter_errors(doc))
    assert not _accepts(STRICT_SCHEMAS[topic], doc)


def _without(values: dict[str, Any], name: str) -> dict[str, Any]:
    return {k: v for k, v in values.items() if k != name}


def _with(topic: Topic, **changes: Any) -> dict[str, Any]:
    return {**copy.deepcopy(VALID[topic]), **changes}


BAD: dict[str, tuple[Topic, Any]] = {
    "negative_volume": (Topic.MARKET_DATA, _with(Topic.MARKET_DATA, volume=-1.0)),
    "zero_price": (Topic.MARKET_DATA, _with(Topic.MARKET_DATA, price=0.0)),
    "negative_price": (Topic.SIGNALS, _with(Topic.SIGNALS, price=-3.5)),
    "negative_quantity": (Topic.ORDERS, _with(Topic.ORDERS, quantity=-0.01)),
    "negative_fee": (Topic.ORDER_RESULTS, _with(Topic.ORDER_RESULTS, fee=-0.1)),
    "unknown_side": (Topic.MARKET_DATA, _with(Topic.MARKET_DATA, side="HOLD")),
    "lower_case_side": (Topic.ORDERS, _with(Topic.ORDERS, side="buy")),
    "unknown_status": (Topic.ORDER_RESULTS, _with(Topic.ORDER_RESULTS, status="LOST")),
    "missing_symbol": (Topic.MARKET_DATA, _without(VALID[Topic.MARKET_DATA], "symbol")),
    "missing_order_id": (Topic.ORDERS, _without(VALID[Topic.ORDERS], "order_id")),
    "missing_simulated": (Topic.ORDER_RESULTS, _without(VALID[Topic.ORDER_RESULTS], "simulated")),
    "seconds_timestamp": (Topic.MARKET_DATA, _with(Topic.MARKET_DATA, timestamp=TS // 1000)),
    "microseconds_timestamp": (Topic.SIGNALS, _with(Topic.SIGNALS, timestamp=TS * 1000)),
    "price_as_string": (Topic.MARKET_DATA, _with(Topic.MARKET_DATA, price="87250.5")),
    "timestamp_as_string": (Topic.ORDERS, _with(Topic.ORDERS, timestamp=str(TS))),
    "simulated_as_string": (Topic.ORDER_RESULTS, _with(Topic.ORDER_RESULTS, simulated="yes")),
    "strength_above_one": (Topic.SIGNALS, _with(Topic.SIGNALS, strength=1.5)),
    "empty_symbol": (Topic.SIGNALS, _with(Topic.SIGNALS, symbol="")),
    "lower_case_symbol": (Topic.SIGNALS, _with(Topic.SIGNALS, symbol="btc/usdt")),
    "unknown_api_version": (Topic.MARKET_DATA, _with(Topic.MARKET_DATA, api_version="v2.0")),
    "limit_order_without_price": (Topic.ORDERS, _with(Topic.ORDERS, price=None)),
    "limit_order_price_missing": (Topic.ORDERS, _without(VALID[Topic.ORDERS], "price")),
    "fill_without_price": (Topic.ORDER_RESULTS, _with(Topic.ORDER_RESULTS, average_price=None)),
    "fill_of_nothing": (Topic.ORDER_RESULTS, _with(Topic.ORDER_RESULTS, filled_quantity=0.0)),
    "not_an_object": (Topic.SIGNALS, ["sig-1"]),
}


@pytest.mark.parametrize("topic", list(Topic))
def test_schemas__accept_the_valid_sample_the_codec_accepts(topic: Topic) -> None:
    STRICT.decode(topic, json.dumps(VALID[topic]).encode())
    assert _accepts(STRICT_SCHEMAS[topic], VALID[topic])
    assert _accepts(LENIENT_SCHEMAS[topic], VALID[topic])


@pytest.mark.parametrize("case", list(BAD))
def test_schemas__refuse_what_the_strict_codec_refuses(case: str) -> None:
    topic, doc = BAD[case]
    with pytest.raises(ContractError):
        STRICT.decode(topic, json.dumps(doc).encode())
    assert not _accepts(STRICT_SCHEMAS[topic], doc)
    assert not _accepts(LENIENT_SCHEMAS[topic], doc)


@pytest.mark.parametrize("topic", [Topic.SIGNALS, Topic.ORDERS])
def test_lenient_schema__accepts_a_message_without_api_version_and_timestamp(topic: Topic) -> None:
    doc = _without(_without(VALID[topic], "api_version"), "timestamp")
    assert _accepts(LENIENT_SCHEMAS[topic], doc)
    assert not _accepts(STRICT_SCHEMAS[topic], doc)


def test_schemas__ignore_unknown_fields_as_tolerant_readers_do() -> None:
    doc = _with(Topic.MARKET_DATA, ts_ms=TS, exchange_extra={"a": 1})
    STRICT.decode(Topic.MARKET_DATA, json.dumps(doc).encode())
    assert _accepts(STRICT_SCHEMAS[Topic.MARKET_DATA], doc)


@pytest.mark.parametrize("topic", list(Topic))
def test_schemas__state_that_timestamps_are_epoch_milliseconds(topic: Topic) -> None:
    timestamp = contract_schema(CONTRACTS[topic])["properties"]["timestamp"]
    assert timestamp["unit"] == "ms"
    assert "epoch ms" in timestamp["description"]
