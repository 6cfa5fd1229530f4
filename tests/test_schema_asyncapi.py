"""The AsyncAPI document is valid AsyncAPI 3.0 and says who publishes and consumes what.

Validated against the specification's own JSON Schema (draft-07, vendored in
tests/data, see its README), so a document a generator or a registry would refuse
fails here first.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

from core.codec import build_codec
from core.errors import ContractError
from core.redis import letter_fields
from core.schema import asyncapi_document, default_contracts_dir
from core.topics import CodecPath, KeySpace, Profile, ServiceName, Topic
from core.versions.codec import VersionedCodec
from core.versions.declaration import VERSIONS, known_versions

SPEC = json.loads((Path(__file__).parent / "data" / "asyncapi-3.0.0.schema.json").read_text("utf-8"))
SPEC_VALIDATOR = jsonschema.Draft7Validator(SPEC)
DOC = asyncapi_document(KeySpace())


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        if isinstance(node.get("$ref"), str):
            yield node["$ref"]
        for value in node.values():
            yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def _pointer(doc: Any, ref: str) -> Any:
    target = doc
    for part in ref.removeprefix("#/").split("/"):
        target = target[part.replace("~1", "/").replace("~0", "~")]
    return target


def test_asyncapi_spec_schema__is_a_draft_07_schema() -> None:
    assert SPEC["$schema"] == "http://json-schema.org/draft-07/schema"
    jsonschema.Draft7Validator.check_schema(SPEC)


def test_asyncapi__document_validates_against_the_3_0_0_specification() -> None:
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in SPEC_VALIDATOR.iter_errors(DOC)]
    assert not errors, errors
    assert DOC["asyncapi"] == "3.0.0"


def test_asyncapi__committed_document_validates_against_the_specification() -> None:
    committed = json.loads((default_contracts_dir() / "asyncapi.json").read_text("utf-8"))
    assert SPEC_VALIDATOR.is_valid(committed)


@pytest.mark.parametrize(
    ("where", "bad"),
    [
        (("operations", "ws_publishes_market_data", "action"), "publish"),  # 2.x wording
        (("channels", "market_data", "address"), 5),
        (("info", "version"), None),
    ],
)
def test_asyncapi__specification_refuses_a_broken_document(where: tuple[str, ...], bad: Any) -> None:
    doc = json.loads(json.dumps(DOC))
    parent = doc
    for key in where[:-1]:
        parent = parent[key]
    parent[where[-1]] = bad
    assert not SPEC_VALIDATOR.is_valid(doc)


def test_asyncapi__every_reference_resolves_inside_the_document() -> None:
    refs = set(_refs(DOC))
    assert refs
    for ref in refs:
        assert ref.startswith("#/"), ref
        assert _pointer(DOC, ref) is not None


def test_asyncapi__every_topic_has_a_channel_a_stream_and_a_dead_letter_stream() -> None:
    keys = KeySpace()
    addresses = {c["address"] for c in DOC["channels"].values()}
    for topic in Topic:
        assert {keys.channel(topic), keys.stream(topic), keys.dlq(topic)} <= addresses
    assert len(DOC["channels"]) == 3 * len(Topic)


def test_asyncapi__addresses_carry_the_key_prefix() -> None:
    keys = KeySpace(prefix="staging:")
    doc = asyncapi_document(keys)
    assert doc["channels"]["orders_stream"]["address"] == "staging:orders_stream"
    assert doc["operations"]["execution_reads_orders_stream"]["x-consumer-group"] == keys.group(
        ServiceName.EXECUTION
    )


def _ops(service: ServiceName, action: str) -> set[str]:
    return {
        _pointer(DOC, op["channel"]["$ref"])["address"]
        for op in DOC["operations"].values()
        if op["action"] == action and {"name": service.value} in op["tags"]
    }


@pytest.mark.parametrize("service", list(ServiceName))
def test_asyncapi__operations_follow_what_each_service_consumes_and_produces(service: ServiceName) -> None:
    keys = KeySpace()
    sends = {keys.channel(service.produces), keys.stream(service.produces), keys.dlq(service.dead_letters)}
    receives = {keys.stream(service.consumes)} if service.consumes else set()
    assert _ops(service, "send") == sends
    assert _ops(service, "receive") == receives


def test_asyncapi__ws_and_signal_dead_letter_to_market_data() -> None:
    assert "market_data_dlq" in _ops(ServiceName.WS, "send")
    assert "market_data_dlq" in _ops(ServiceName.SIGNAL, "send")


@pytest.mark.parametrize("topic", list(Topic))
def test_asyncapi__each_channel_and_operation_lists_a_message_per_declared_version(topic: Topic) -> None:
    names = [VERSIONS[topic].model(v).__name__ for v in known_versions(topic)]
    for channel in (KeySpace().channel(topic), KeySpace().stream(topic)):
        assert list(DOC["channels"][channel]["messages"]) == names
        versions = [
            _pointer(DOC, r["$ref"])["x-api-version"] for r in DOC["channels"][channel]["messages"].values()
        ]
        assert versions == known_versions(topic)
    for op in DOC["operations"].values():
        if op["channel"]["$ref"] == f"#/channels/{KeySpace().stream(topic)}":
            assert [r["$ref"].rsplit("/", 1)[1] for r in op["messages"]] == names
    assert DOC["components"]["messages"][names[0]]["payload"] == {"$ref": f"#/components/schemas/{names[0]}"}


def _payload_validator(message_ref: str) -> jsonschema.Draft7Validator:
    registry = Registry().with_resource("urn:cdb:asyncapi", Resource.from_contents(DOC, DRAFT7))
    payload_ref = _pointer(DOC, message_ref)["payload"]["$ref"]
    return jsonschema.Draft7Validator({"$ref": f"urn:cdb:asyncapi{payload_ref}"}, registry=registry)


@pytest.mark.parametrize(("topic", "version"), [(t, v) for t in Topic for v in known_versions(t)])
def test_asyncapi__message_payload_accepts_a_real_encoded_message_of_its_version_only(
    topic: Topic, version: str
) -> None:
    channel = DOC["channels"][KeySpace().stream(topic)]
    validators = {name: _payload_validator(ref["$ref"]) for name, ref in channel["messages"].items()}
    codec = VersionedCodec(build_codec(CodecPath.PYDANTIC, Profile.STRICT), writes={topic: version})
    model = VERSIONS[topic].model(version)
    sample = {
        Topic.MARKET_DATA: {
            "symbol": "BTC/USDT",
            "price": 1.5,
            "volume": 2.0,
            "side": "BUY",
            "venue": "mexc",
        },
        Topic.SIGNALS: {
            "signal_id": "s",
            "symbol": "BTC/USDT",
            "side": "SELL",
            "price": 1.5,
            "strength": 0.5,
            "reason": "r",
        },
        Topic.ORDERS: {
            "order_id": "o",
            "signal_id": "s",
            "symbol": "BTC/USDT",
            "side": "SELL",
            "order_type": "MARKET",
            "quantity": 1.0,
        },
        Topic.ORDER_RESULTS: {
            "order_id": "o",
            "symbol": "BTC/USDT",
            "side": "SELL",
            "status": "REJECTED",
            "filled_quantity": 0.0,
            "fee": 0.0,
            "simulated": True,
        },
    }[topic]
    doc = json.loads(codec.encode(topic, codec.build(topic, {**sample, "timestamp": 1_767_225_600_000})))
    assert doc["api_version"] == version
    accepted = [name for name, validator in validators.items() if validator.is_valid(doc)]
    assert accepted == [model.__name__], list(validators[model.__name__].iter_errors(doc))
    assert not validators[model.__name__].is_valid({**doc, "side": "HOLD"})


def _dead_letter_validator() -> jsonschema.Draft7Validator:
    registry = Registry().with_resource("urn:cdb:asyncapi", Resource.from_contents(DOC, DRAFT7))
    return jsonschema.Draft7Validator(
        {"$ref": "urn:cdb:asyncapi#/components/schemas/DeadLetter"}, registry=registry
    )


@pytest.mark.parametrize("failure", ["contract_error", "handler_exception"])
def test_asyncapi__dead_letter_schema_matches_what_the_transport_writes(failure: str) -> None:
    codec = build_codec(CodecPath.PYDANTIC, Profile.STRICT)
    raw = b'{"symbol": 5}'
    error: Exception
    try:
        codec.decode(Topic.MARKET_DATA, raw)
    except ContractError as exc:
        error = exc if failure == "contract_error" else RuntimeError("handler crashed")
    fields = letter_fields(Topic.MARKET_DATA, raw, error, service=ServiceName.SIGNAL, path="pydantic")
    entry = {k: v.decode("utf-8") if isinstance(v, bytes) else v for k, v in fields.items()}
    schema = DOC["components"]["schemas"]["DeadLetter"]
    assert set(entry) == set(schema["properties"]) == set(schema["required"])
    assert _dead_letter_validator().is_valid(entry), list(_dead_letter_validator().iter_errors(entry))
