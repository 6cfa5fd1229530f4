"""The v1.0 contracts, the strict/lenient profiles, the legacy classes, and the import rule.

- strict: ``api_version`` and ``timestamp`` are required; a legacy payload is refused.
- lenient: a missing or null ``api_version`` is filled (``"v1.0"``); a missing or null
  ``timestamp`` is filled from the stream entry's server time (its id) on signals, orders
  and order results, never from the reader's clock, and refused without an entry id; on
  market_data it is business time and always refused. Filled fields are reported in
  ``Decoded.defaulted`` (counted as evidence against cutover). The strict profile refuses
  an explicit null (``int_type``); so does the legacy path (the same ``int_type``: reasons
  agree across paths, tests/test_reason_agreement.py), which checks every contract field that
  is present, even one the legacy class does not read.
- legacy classes stay faithful: ``KeyError`` on a missing key, unknown keys ignored,
  no validation.
- only the codec registry imports the legacy modules and the lenient profile.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from core.codec import build_codec
from core.domain.contracts import (
    MAX_TIMESTAMP_MS,
    MIN_TIMESTAMP_MS,
    MarketDataV1,
    OrderResultV1,
    OrderV1,
    Side,
    SignalV1,
)
from core.errors import ContractError
from core.topics import CodecPath, Profile, Topic
from core.utils.clock import FrozenClock
from migration.legacy import MarketData, Order, OrderResult, Signal
from tests.strategies import CONTRACT_CLASSES, LEGACY_FIELDS, contract_values, legacy_values

ROOT = Path(__file__).resolve().parents[1]
TOPICS = list(Topic)
LEGACY = build_codec(CodecPath.LEGACY)
LENIENT = build_codec(CodecPath.PYDANTIC, Profile.LENIENT)
STRICT = build_codec(CodecPath.PYDANTIC, Profile.STRICT)
LEGACY_CLASSES = {
    Topic.MARKET_DATA: MarketData,
    Topic.SIGNALS: Signal,
    Topic.ORDERS: Order,
    Topic.ORDER_RESULTS: OrderResult,
}
TS = 1_767_225_600_000


def _full(topic: Topic) -> dict[str, Any]:
    """A valid full v1.0 message of ``topic`` (deterministic)."""
    return dict(_FULL[topic])


_FULL: dict[Topic, dict[str, Any]] = {
    Topic.MARKET_DATA: {
        "api_version": "v1.0",
        "symbol": "BTC/USDT",
        "price": 87_250.5,
        "volume": 0.0125,
        "side": "BUY",
        "venue": "mexc",
        "timestamp": TS,
    },
    Topic.SIGNALS: {
        "api_version": "v1.0",
        "signal_id": "sig-1",
        "symbol": "BTC/USDT",
        "side": "BUY",
        "price": 87_250.5,
        "strength": 0.42,
        "reason": "Kurs fällt – 止损 🚀",
        "timestamp": TS,
    },
    Topic.ORDERS: {
        "api_version": "v1.0",
        "order_id": "ord-1",
        "signal_id": "sig-1",
        "symbol": "BTC/USDT",
        "side": "BUY",
        "order_type": "MARKET",
        "quantity": 0.01,
        "price": None,
        "timestamp": TS,
    },
    Topic.ORDER_RESULTS: {
        "api_version": "v1.0",
        "order_id": "ord-1",
        "symbol": "BTC/USDT",
        "side": "BUY",
        "status": "REJECTED",
        "filled_quantity": 0.0,
        "average_price": None,
        "fee": 0.0,
        "reason": "insufficient balance",
        "simulated": True,
        "timestamp": TS,
    },
}


def _without(obj: dict[str, Any], *names: str) -> bytes:
    return json.dumps({k: v for k, v in obj.items() if k not in names}).encode()


def _locs(exc: ContractError) -> set[str]:
    return {str(e["loc"][0]) for e in exc.errors if e["loc"]}


# --- the contracts themselves -------------------------------------------------------------


@pytest.mark.parametrize("topic", TOPICS)
@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_strategies__generate_messages_the_strict_contract_accepts(topic: Topic, data: st.DataObject) -> None:
    values = data.draw(contract_values(topic))
    model = CONTRACT_CLASSES[topic]
    assert model.model_validate_json(json.dumps(values)).model_dump(mode="json") == values


@pytest.mark.parametrize("topic", TOPICS)
def test_contract__every_field_is_documented(topic: Topic) -> None:
    for name, field in CONTRACT_CLASSES[topic].model_fields.items():
        assert field.description, f"{topic.value}.{name} has no description"


@pytest.mark.parametrize("topic", TOPICS)
def test_contract__timestamp_schema_states_milliseconds_and_the_plausible_range(topic: Topic) -> None:
    prop = CONTRACT_CLASSES[topic].model_json_schema()["properties"]["timestamp"]
    assert prop["unit"] == "ms"
    assert (prop["minimum"], prop["maximum"]) == (MIN_TIMESTAMP_MS, MAX_TIMESTAMP_MS)


@pytest.mark.parametrize("topic", TOPICS)
def test_contract__is_frozen(topic: Topic) -> None:
    message = CONTRACT_CLASSES[topic].model_validate(_full(topic))
    with pytest.raises(ValidationError):
        message.symbol = "ETH/USDT"  # type: ignore[misc]


@pytest.mark.parametrize("topic", TOPICS)
def test_contract__ignores_unknown_fields(topic: Topic) -> None:
    message = CONTRACT_CLASSES[topic].model_validate({**_full(topic), "added_in_v1_1": [1, 2]})
    assert not hasattr(message, "added_in_v1_1")


def test_order_contract__limit_order_without_price_is_refused() -> None:
    with pytest.raises(ValidationError, match="LIMIT order needs a price"):
        OrderV1.model_validate({**_full(Topic.ORDERS), "order_type": "LIMIT", "price": None})


@pytest.mark.parametrize("status", ["FILLED", "PARTIALLY_FILLED"])
def test_order_result_contract__fill_without_average_price_is_refused(status: str) -> None:
    values = {**_full(Topic.ORDER_RESULTS), "status": status, "filled_quantity": 0.5}
    with pytest.raises(ValidationError, match="needs filled_quantity > 0 and average_price"):
        OrderResultV1.model_validate(values)


@pytest.mark.parametrize("symbol", ["btc/usdt", "BTC USDT", "", "BTC//USDT", "A" * 33, "BTC/USDT/EUR"])
def test_contract__symbol_outside_the_pattern_is_refused(symbol: str) -> None:
    with pytest.raises(ValidationError):
        SignalV1.model_validate({**_full(Topic.SIGNALS), "symbol": symbol})


# --- strict and lenient profiles on a legacy payload ---------------------------------------


@pytest.mark.parametrize("topic", [Topic.SIGNALS, Topic.ORDERS, Topic.ORDER_RESULTS])
def test_strict_profile__refuses_legacy_payload_naming_api_version_and_timestamp(topic: Topic) -> None:
    raw = _without(_full(topic), "api_version", "timestamp")
    with pytest.raises(ContractError) as info:
        STRICT.decode(topic, raw)
    assert _locs(info.value) == {"api_version", "timestamp"}
    assert {e["type"] for e in info.value.errors} == {"missing"}
    assert info.value.profile == "strict"


FILLABLE = [Topic.SIGNALS, Topic.ORDERS, Topic.ORDER_RESULTS]
ENTRY_MS = TS + 4_321
ENTRY_ID = f"{ENTRY_MS}-7".encode()


def _as_fields(raw: bytes) -> dict[str, str]:
    return {k: json.dumps(v) for k, v in json.loads(raw).items()}


@pytest.mark.parametrize("topic", FILLABLE)
def test_lenient_profile__accepts_legacy_payload_and_reports_both_defaults(
    topic: Topic, frozen_clock: FrozenClock
) -> None:
    raw = _without(_full(topic), "api_version", "timestamp")
    for decoded in (
        LENIENT.decode(topic, raw, entry_id=ENTRY_ID),
        LENIENT.from_fields(topic, _as_fields(raw), entry_id=ENTRY_ID),
    ):
        assert decoded.defaulted == ("api_version", "timestamp")
        assert decoded.message.api_version == "v1.0"
        assert decoded.message.timestamp == ENTRY_MS  # the entry's server time, not the clock
        assert decoded.message.timestamp != frozen_clock.now_ms()


@pytest.mark.parametrize("topic", FILLABLE)
def test_lenient_profile__missing_timestamp_without_an_entry_id_is_refused_not_guessed(topic: Topic) -> None:
    raw = _without(_full(topic), "timestamp")
    for decode in (lambda: LENIENT.decode(topic, raw), lambda: LENIENT.from_fields(topic, _as_fields(raw))):
        with pytest.raises(ContractError) as info:
            decode()
        assert [(e["type"], e["loc"]) for e in info.value.errors] == [
            ("timestamp_unfillable", ("timestamp",))
        ]
        assert "never from the reader's clock" in info.value.errors[0]["msg"]


@pytest.mark.parametrize("entry_id", [b"0-1", "12-0", b"not-an-id", b"99999999999999999-0"])
def test_lenient_profile__entry_id_without_plausible_ms_is_refused(entry_id: bytes | str) -> None:
    raw = _without(_full(Topic.ORDERS), "timestamp")
    with pytest.raises(ContractError) as info:
        LENIENT.decode(Topic.ORDERS, raw, entry_id=entry_id)
    assert info.value.errors[0]["type"] == "timestamp_unfillable"


def test_lenient_profile__decodes_into_the_strict_contract_class() -> None:
    raw = _without(_full(Topic.SIGNALS), "api_version", "timestamp")
    decoded = LENIENT.decode(Topic.SIGNALS, raw, entry_id=f"{TS}-0")
    assert type(decoded.message) is SignalV1
    assert decoded.message == SignalV1.model_validate({**_full(Topic.SIGNALS), "timestamp": TS})


def test_lenient_profile__filled_timestamp_ignores_the_clock(frozen_clock: FrozenClock) -> None:
    raw = _without(_full(Topic.ORDERS), "timestamp")
    first = LENIENT.decode(Topic.ORDERS, raw, entry_id=ENTRY_ID).message.timestamp
    frozen_clock.advance(1_500)
    second = LENIENT.decode(Topic.ORDERS, raw, entry_id=ENTRY_ID).message.timestamp
    third = LENIENT.decode(Topic.ORDERS, raw, entry_id=f"{ENTRY_MS + 9}-0").message.timestamp
    assert (first, second, third) == (ENTRY_MS, ENTRY_MS, ENTRY_MS + 9)


@pytest.mark.parametrize("topic", FILLABLE)
def test_profiles__only_timestamp_missing_reports_only_timestamp(topic: Topic) -> None:
    raw = _without(_full(topic), "timestamp")
    assert LENIENT.decode(topic, raw, entry_id=ENTRY_ID).defaulted == ("timestamp",)
    with pytest.raises(ContractError) as info:
        STRICT.decode(topic, raw, entry_id=ENTRY_ID)
    assert _locs(info.value) == {"timestamp"}


@pytest.mark.parametrize("timestamp", ["missing", None])
@pytest.mark.parametrize("codec", [LEGACY, LENIENT, STRICT], ids=["legacy", "lenient", "strict"])
def test_market_data__missing_or_null_timestamp_is_refused_on_every_path_and_form(
    codec: Any, timestamp: str | None
) -> None:
    """A trade's time is business time: never filled, not even from the entry id."""
    values = _full(Topic.MARKET_DATA)
    if timestamp is None:
        values["timestamp"] = None
    else:
        del values["timestamp"]
    raw = json.dumps(values).encode()
    for decode in (
        lambda: codec.decode(Topic.MARKET_DATA, raw, entry_id=ENTRY_ID),
        lambda: codec.from_fields(Topic.MARKET_DATA, _as_fields(raw), entry_id=ENTRY_ID),
    ):
        with pytest.raises(ContractError) as info:
            decode()
        assert _locs(info.value) == {"timestamp"}


@pytest.mark.parametrize("topic", TOPICS)
def test_profiles__only_api_version_missing_reports_only_api_version(topic: Topic) -> None:
    raw = _without(_full(topic), "api_version")
    assert LENIENT.decode(topic, raw).defaulted == ("api_version",)
    with pytest.raises(ContractError) as info:
        STRICT.decode(topic, raw)
    assert _locs(info.value) == {"api_version"}


@pytest.mark.parametrize("topic", FILLABLE)
def test_lenient_profile__explicit_null_timestamp_is_filled_from_the_entry_and_reported(topic: Topic) -> None:
    raw = json.dumps({**_full(topic), "timestamp": None}).encode()
    for decoded in (
        LENIENT.decode(topic, raw, entry_id=ENTRY_ID),
        LENIENT.from_fields(topic, _as_fields(raw), entry_id=ENTRY_ID),
    ):
        assert decoded.defaulted == ("timestamp",)
        assert decoded.message.timestamp == ENTRY_MS


@pytest.mark.parametrize("topic", TOPICS)
def test_lenient_profile__explicit_null_api_version_is_filled_like_a_missing_one(topic: Topic) -> None:
    raw = json.dumps({**_full(topic), "api_version": None}).encode()
    for decoded in (LENIENT.decode(topic, raw), LENIENT.from_fields(topic, _as_fields(raw))):
        assert decoded.defaulted == ("api_version",)
        assert decoded.message.api_version == "v1.0"
        assert decoded.message == CONTRACT_CLASSES[topic].model_validate(_full(topic))


@pytest.mark.parametrize("topic", TOPICS)
def test_strict_profile__explicit_null_timestamp_is_refused(topic: Topic) -> None:
    with pytest.raises(ContractError) as info:
        STRICT.decode(topic, json.dumps({**_full(topic), "timestamp": None}).encode())
    assert [(e["type"], e["loc"]) for e in info.value.errors] == [("int_type", ("timestamp",))]


@pytest.mark.parametrize("topic", TOPICS)
def test_legacy_path__explicit_null_timestamp_is_refused(topic: Topic) -> None:
    """Even where the legacy class has no timestamp: a present field must obey the contract."""
    with pytest.raises(ContractError) as info:
        LEGACY.decode(topic, json.dumps({**_full(topic), "timestamp": None}).encode())
    assert [(e["type"], e["loc"]) for e in info.value.errors] == [("int_type", ("timestamp",))]


@pytest.mark.parametrize("codec", [LEGACY, STRICT], ids=["legacy", "strict"])
def test_legacy_and_strict__explicit_null_api_version_is_refused(codec: Any) -> None:
    with pytest.raises(ContractError) as info:
        codec.decode(Topic.SIGNALS, json.dumps({**_full(Topic.SIGNALS), "api_version": None}).encode())
    assert _locs(info.value) == {"api_version"}


@pytest.mark.parametrize("topic", TOPICS)
@settings(max_examples=50, deadline=None)
@given(data=st.data())
def test_strict_profile__refuses_every_legacy_produced_message(topic: Topic, data: st.DataObject) -> None:
    message = LEGACY_CLASSES[topic](**data.draw(legacy_values(topic)))
    with pytest.raises(ContractError) as info:
        STRICT.decode(topic, LEGACY.encode(topic, message))
    assert "api_version" in _locs(info.value)


# --- legacy classes stay faithful ------------------------------------------------------------


@pytest.mark.parametrize("topic", TOPICS)
def test_legacy_from_dict__missing_key_raises_key_error(topic: Topic) -> None:
    values = {n: _full(topic)[n] for n in LEGACY_FIELDS[topic]}
    del values["symbol"]
    with pytest.raises(KeyError, match="symbol"):
        LEGACY_CLASSES[topic].from_dict(values)


@pytest.mark.parametrize("topic", TOPICS)
def test_legacy_from_dict__ignores_unknown_keys(topic: Topic) -> None:
    message = LEGACY_CLASSES[topic].from_dict({**_full(topic), "added_later": {"x": 1}})
    assert set(message.to_dict()) == set(LEGACY_FIELDS[topic])


def test_legacy_from_dict__does_not_validate() -> None:
    values = {**_full(Topic.MARKET_DATA), "side": "HOLD", "price": "-3", "symbol": "not a symbol"}
    message = MarketData.from_dict(values)
    assert (message.side, message.price, message.symbol) == ("HOLD", -3.0, "not a symbol")


def test_legacy_from_dict__converts_numbers_with_float_and_int() -> None:
    message = MarketData.from_dict({**_full(Topic.MARKET_DATA), "volume": 2, "timestamp": "1767225600000"})
    assert (message.volume, message.timestamp) == (2.0, TS)
    assert isinstance(message.volume, float)


def test_legacy_to_dict__is_the_plain_field_dict() -> None:
    values = {n: _full(Topic.ORDERS)[n] for n in LEGACY_FIELDS[Topic.ORDERS]}
    assert Order(**values).to_dict() == values


def test_legacy_codec__refuses_what_the_legacy_class_would_accept() -> None:
    """The guard in front of ``from_dict``: the class takes ``HOLD``, the codec does not."""
    with pytest.raises(ContractError) as info:
        LEGACY.decode(Topic.MARKET_DATA, json.dumps({**_full(Topic.MARKET_DATA), "side": "HOLD"}).encode())
    assert info.value.errors[0]["loc"] == ("side",)


def test_side__values_are_the_wire_strings() -> None:
    assert [s.value for s in Side] == ["BUY", "SELL"]
    assert MarketDataV1.model_validate(_full(Topic.MARKET_DATA)).side is Side.BUY


# --- core and the services never import the migration; its install() plugs it in ------------

_MIGRATION_ONLY = {
    "migration.legacy",
    "migration.legacy_codec",
    "migration.legacy_guard",
    "migration.lenient",
}
_LENIENT_NAMES = {"LENIENT_FIELDS", "LenientReader", "lenient_variant", "lenient"}


def _imported_modules(tree: ast.AST) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
            if node.module == "migration" and {a.name for a in node.names} & _LENIENT_NAMES:
                found.add("migration.lenient")
    return found


def test_import_rule__scanner_sees_every_import_form() -> None:
    source = (
        "import migration.legacy\n"
        "from migration import legacy\n"
        "from migration.legacy_codec import LegacyCodec\n"
        "from migration import LenientReader\n"
        "def f():\n    import migration.lenient\n"
    )
    assert _imported_modules(ast.parse(source)) >= _MIGRATION_ONLY - {"migration.legacy_guard"}


def test_import_rule__no_core_or_services_module_imports_the_migration() -> None:
    offenders = []
    for folder in ("core", "services"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            found = _imported_modules(ast.parse(path.read_text(encoding="utf-8")))
            bad = {m for m in found if m == "migration" or m.startswith("migration.")}
            if bad:
                offenders.append(f"{rel}: {sorted(bad)}")
    assert offenders == []


def test_import_rule__install_is_where_the_registry_meets_the_migration() -> None:
    imported = _imported_modules(ast.parse((ROOT / "migration/install.py").read_text(encoding="utf-8")))
    wanted = {"core.codec.registry", "migration.legacy_codec", "migration.lenient", "migration.shadow"}
    assert wanted <= imported


# --- contracts built in code, and timestamps in the wrong unit (issue 14, Build 9) --------------


@pytest.mark.parametrize("topic", TOPICS)
def test_contract_built_in_code__defaults_api_version_to_v1_0(topic: Topic) -> None:
    values = _full(topic)
    del values["api_version"]
    message = CONTRACT_CLASSES[topic](**values)
    assert message.api_version == "v1.0"
    assert message == CONTRACT_CLASSES[topic].model_validate(_full(topic))


@pytest.mark.parametrize("topic", TOPICS)
def test_strict_profile__wire_message_without_api_version_is_refused_in_both_forms(topic: Topic) -> None:
    raw = _without(_full(topic), "api_version")
    for decode in (
        lambda: STRICT.decode(topic, raw),
        lambda: STRICT.from_fields(topic, _as_fields(raw)),
        lambda: STRICT.from_fields(topic, {k.encode(): v.encode() for k, v in _as_fields(raw).items()}),
    ):
        with pytest.raises(ContractError) as info:
            decode()
        assert [(e["type"], e["loc"]) for e in info.value.errors] == [("missing", ("api_version",))]


@pytest.mark.parametrize("topic", TOPICS)
def test_strict_profile__missing_api_version_is_reported_next_to_other_errors(topic: Topic) -> None:
    values = {k: v for k, v in _full(topic).items() if k != "api_version"}
    values["symbol"] = "not a symbol"
    raw = json.dumps(values).encode()
    for decode in (lambda: STRICT.decode(topic, raw), lambda: STRICT.from_fields(topic, _as_fields(raw))):
        with pytest.raises(ContractError) as info:
            decode()
        assert _locs(info.value) == {"api_version", "symbol"}


@pytest.mark.parametrize("topic", TOPICS)
def test_exported_strict_schema__still_requires_api_version(topic: Topic) -> None:
    from core.schema import contract_schema

    schema = contract_schema(CONTRACT_CLASSES[topic])
    assert "api_version" in schema["required"]
    assert "default" not in schema["properties"]["api_version"]


@pytest.mark.parametrize(
    ("value", "unit"),
    [
        (1_767_225_600, "epoch seconds"),
        (1_767_225_600.5, "epoch seconds"),
        (1_767_225_600_000_000, "microseconds"),
    ],
)
@pytest.mark.parametrize("codec", [LEGACY, LENIENT, STRICT], ids=["legacy", "lenient", "strict"])
def test_every_path__timestamp_in_the_wrong_unit_says_so_and_names_the_ms_helper(
    codec: Any, value: float, unit: str
) -> None:
    raw = json.dumps({**_full(Topic.MARKET_DATA), "timestamp": value}).encode()
    for decode in (
        lambda: codec.decode(Topic.MARKET_DATA, raw),
        lambda: codec.from_fields(Topic.MARKET_DATA, _as_fields(raw)),
    ):
        with pytest.raises(ContractError) as info:
            decode()
        [error] = info.value.errors
        assert error["loc"] == ("timestamp",)
        assert unit in error["msg"]
        assert "core.utils.clock.now_ms()" in error["msg"]


def test_contract_built_in_code__seconds_timestamp_error_says_seconds() -> None:
    values = {**_full(Topic.ORDERS), "timestamp": 1_767_225_600}
    with pytest.raises(ValidationError, match=r"looks like epoch seconds.*core\.utils\.clock\.now_ms"):
        OrderV1(**values)
    with pytest.raises(ValidationError, match="looks like epoch seconds"):
        OrderV1.model_validate(values)
    with pytest.raises(ValidationError, match="looks like epoch seconds"):
        OrderV1.model_validate_json(json.dumps(values))


def test_contract__a_ms_timestamp_error_keeps_pydantics_message() -> None:
    with pytest.raises(ValidationError) as info:
        SignalV1.model_validate({**_full(Topic.SIGNALS), "timestamp": MAX_TIMESTAMP_MS + 1})
    [error] = info.value.errors()
    assert error["type"] == "less_than_equal"
    assert "seconds" not in error["msg"]
