"""Contract versions as data: the declaration agrees with the models, the converters round-trip,
the per-version schemas accept what the codec writes."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import jsonschema
import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.domain.contracts import MarketDataV1, OrderResultV1, OrderStatus
from core.schema.compat import compare
from core.schema.export import contract_schema
from core.topics import Topic
from core.versions.changes import (
    ConversionError,
    EnumValueAdded,
    FieldAdded,
    FieldRemoved,
    FieldRenamed,
    ValueConverted,
)
from core.versions.convert import convert
from core.versions.declaration import VERSIONS, known_versions
from core.versions.fields import DECIMAL_MAX_CHARS, plain_decimal
from core.versions.models import MarketDataV2, OrderResultV2, OrderV1_1
from core.versions.schema import version_files, version_schema
from tests.versions_helpers import STRICT, TS
from tests.versions_helpers import order as _order
from tests.versions_helpers import result_v11 as _result_v11
from tests.versions_helpers import trade as _trade

# --- the declaration -------------------------------------------------------------------------


def _field_names_after(step_changes: tuple[Any, ...], names: set[str]) -> set[str]:
    out = set(names)
    for change in step_changes:
        if isinstance(change, FieldAdded):
            out.add(change.name)
        elif isinstance(change, FieldRemoved):
            out.discard(change.name)
        elif isinstance(change, FieldRenamed):
            out.discard(change.old)
            out.add(change.new)
    return out


@pytest.mark.parametrize("topic", list(Topic))
def test_declaration__each_step_turns_the_older_fields_into_the_newer_models_fields(topic: Topic) -> None:
    declared = VERSIONS[topic]
    for step in declared.steps:
        older, newer = declared.model(step.older), declared.model(step.newer)
        assert _field_names_after(step.changes, set(older.model_fields)) == set(newer.model_fields), step


@pytest.mark.parametrize("topic", list(Topic))
def test_declaration__breaking_flag_agrees_with_the_schema_compatibility_classifier(topic: Topic) -> None:
    declared = VERSIONS[topic]
    for step in declared.steps:
        changes = compare(
            contract_schema(declared.model(step.older)), contract_schema(declared.model(step.newer))
        )
        # api_version is the discriminator (it changes by definition); v1.1's filled <= ordered is
        # a rule JSON Schema cannot state: neither says whether a field's readers break.
        real = [c for c in changes if c.breaking and c.field not in ("api_version", "")]
        assert bool(real) is step.breaking, (step, [c.explain() for c in real])


def test_declaration__versions_are_ordered_and_v1_0_is_first_everywhere() -> None:
    assert known_versions(Topic.ORDERS) == ["v1.0", "v1.1", "v2.0"]
    assert known_versions(Topic.MARKET_DATA) == ["v1.0", "v2.0"]
    assert all(known_versions(t)[0] == "v1.0" for t in Topic)


def test_order_descriptions__promise_no_echo_that_no_order_result_carries() -> None:
    # An order field described as "echoed" (back in the result) must be a field of some version
    # of order_results; client_order_id is not (no result version has it), so it is not echoed.
    results = {
        name
        for v in known_versions(Topic.ORDER_RESULTS)
        for name in VERSIONS[Topic.ORDER_RESULTS].model(v).model_fields
    }
    promised = {
        (version, name)
        for version in known_versions(Topic.ORDERS)
        for name, info in VERSIONS[Topic.ORDERS].model(version).model_fields.items()
        if "echo" in (info.description or "").lower() and name not in results
    }
    assert promised == set()


# --- v1.1: the additive change and the rules it enables -----------------------------------------


def test_v1_1__order_up_from_v1_0_is_gtc_without_client_id() -> None:
    up = convert(Topic.ORDERS, _order(), "v1.1")
    assert isinstance(up, OrderV1_1)
    assert (up.time_in_force.value, up.client_order_id, up.price) == ("GTC", None, 64000.25)


def test_v1_1__ioc_order_is_refused_for_a_v1_0_reader_but_gtc_goes_down() -> None:
    gtc = convert(Topic.ORDERS, _order(), "v1.1")
    ioc = OrderV1_1.model_validate({**gtc.model_dump(), "time_in_force": "IOC", "client_order_id": "c-1"})
    assert convert(Topic.ORDERS, gtc, "v1.0") == _order()
    with pytest.raises(ConversionError, match="time_in_force"):
        convert(Topic.ORDERS, ioc, "v1.0")


def test_v1_1__result_filled_beyond_ordered_is_refused() -> None:
    with pytest.raises(ValueError, match="exceeds ordered_quantity"):
        _result_v11(status="PARTIALLY_FILLED", filled_quantity=0.6)
    assert _result_v11(status="PARTIALLY_FILLED", filled_quantity=0.2).filled_quantity == 0.2


def test_v1_1__rejected_result_that_fills_is_refused() -> None:
    with pytest.raises(ValueError, match="carries no fill"):
        _result_v11(status="REJECTED", filled_quantity=0.1, average_price=None)
    rejected = _result_v11(status="REJECTED", filled_quantity=0.0, average_price=None)
    assert rejected.status is OrderStatus.REJECTED


def test_v1_1__result_down_to_v1_0_drops_ordered_quantity_only() -> None:
    down = convert(Topic.ORDER_RESULTS, _result_v11(), "v1.0")
    assert isinstance(down, OrderResultV1)
    assert down.model_dump(exclude={"api_version"}) == _result_v11().model_dump(
        exclude={"api_version", "ordered_quantity"}
    )


# --- v2.0: exact decimals and the rename ---------------------------------------------------------

finite_positive = st.one_of(
    st.floats(min_value=5e-324, max_value=1e60, allow_nan=False, allow_infinity=False),
    st.floats(min_value=1e-8, max_value=1e12),  # the range real prices and sizes live in: all fit
)
decimals_15 = st.builds(
    lambda digits, exp: Decimal(digits).scaleb(exp),
    st.integers(min_value=1, max_value=10**15 - 1),
    st.integers(min_value=-20, max_value=20),
)


@given(price=finite_positive, volume=finite_positive)
def test_v2__float_to_decimal_and_back_returns_the_same_float(price: float, volume: float) -> None:
    v1 = _trade(price=price, volume=volume)
    if any(len(plain_decimal(Decimal(repr(x)))) > DECIMAL_MAX_CHARS for x in (price, volume)):
        with pytest.raises(ConversionError):  # does not fit a decimal string: refused, never cut
            convert(Topic.MARKET_DATA, v1, "v2.0")
        return
    v2 = convert(Topic.MARKET_DATA, v1, "v2.0")
    assert isinstance(v2, MarketDataV2)
    assert v2.price == Decimal(repr(price))  # the shortest decimal that reads back as the float
    assert convert(Topic.MARKET_DATA, v2, "v1.0") == v1


@given(price=decimals_15, quantity=decimals_15)
def test_v2__decimal_with_at_most_15_digits_survives_a_v1_reader(price: Decimal, quantity: Decimal) -> None:
    v2 = MarketDataV2(
        symbol="BTC/USDT", price=price, quantity=quantity, side="SELL", venue="mexc", timestamp=TS
    )
    back = convert(Topic.MARKET_DATA, convert(Topic.MARKET_DATA, v2, "v1.0"), "v2.0")
    assert (back.price, back.quantity) == (price, quantity)  # type: ignore[attr-defined]


def test_v2__a_decimal_with_more_digits_than_a_float_holds_is_rounded_to_the_nearest_float() -> None:
    exact = Decimal("0.12345678901234567890")
    v2 = MarketDataV2(symbol="BTC/USDT", price=exact, quantity="1", side="BUY", venue="mexc", timestamp=TS)
    v1 = convert(Topic.MARKET_DATA, v2, "v1.0")
    assert isinstance(v1, MarketDataV1)
    assert v1.price == float(exact)
    assert Decimal(repr(v1.price)) != exact


def test_v2__wire_form_is_decimal_strings_and_volume_is_called_quantity() -> None:
    v2 = convert(Topic.MARKET_DATA, _trade(price=0.1, volume=1e-7), "v2.0")
    body = json.loads(v2.model_dump_json())
    assert (body["price"], body["quantity"], "volume" in body) == ("0.1", "0.0000001", False)


@pytest.mark.parametrize("bad", [64250.5, "1e3", "-1", " 1", "NaN", "1" * 65])
def test_v2__a_decimal_that_is_not_a_plain_string_is_refused(bad: object) -> None:
    body = {"api_version": "v2.0", "symbol": "BTC/USDT", "price": bad, "quantity": "1", "side": "BUY"}
    with pytest.raises(ValueError, match="price"):
        MarketDataV2.model_validate({**body, "venue": "mexc", "timestamp": TS})


def test_v2__a_float_too_large_for_64_characters_is_refused_not_truncated() -> None:
    with pytest.raises(ConversionError, match="price"):
        convert(Topic.MARKET_DATA, _trade(price=1e300), "v2.0")


def test_v2__result_chain_v1_0_to_v2_0_and_back_is_the_same_result() -> None:
    v10 = convert(Topic.ORDER_RESULTS, _result_v11(), "v1.0")
    v20 = convert(Topic.ORDER_RESULTS, v10, "v2.0")
    assert isinstance(v20, OrderResultV2)
    assert (v20.fee, v20.ordered_quantity) == (Decimal("0.032"), None)
    assert convert(Topic.ORDER_RESULTS, v20, "v1.0") == v10


def test_changes__enum_value_added_maps_to_its_fallback_or_is_refused() -> None:
    values = {"status": "EXPIRED"}
    EnumValueAdded("status", "EXPIRED", fallback="CANCELLED").down(values)
    assert values == {"status": "CANCELLED"}
    with pytest.raises(ConversionError, match="EXPIRED"):
        EnumValueAdded("status", "EXPIRED").down({"status": "EXPIRED"})


def test_changes__value_converted_reports_a_failed_conversion_as_refused() -> None:
    change = ValueConverted("fee", str, lambda v: Decimal(v) / 0, "none")
    with pytest.raises(ConversionError, match="fee"):
        change.down({"fee": "1"})


# --- per-version JSON Schema ------------------------------------------------------------------


@pytest.mark.parametrize("rel", sorted(version_files()))
def test_version_schema__accepts_what_the_codec_writes_for_that_version(rel: str) -> None:
    _, topic_name, file = rel.split("/")
    topic, version = Topic(topic_name), file.removesuffix(".json")
    base: Any = {
        Topic.MARKET_DATA: _trade(),
        Topic.SIGNALS: STRICT.build(
            Topic.SIGNALS,
            {
                "signal_id": "s",
                "symbol": "BTC/USDT",
                "side": "BUY",
                "price": 1.5,
                "strength": 0.5,
                "reason": "r",
            },
        ),
        Topic.ORDERS: _order(),
        Topic.ORDER_RESULTS: convert(Topic.ORDER_RESULTS, _result_v11(), "v1.0"),
    }[topic]
    message = convert(topic, base, version)
    validator = jsonschema.Draft202012Validator(version_schema(topic, version))
    assert not list(validator.iter_errors(json.loads(message.model_dump_json())))
    assert list(validator.iter_errors({**json.loads(message.model_dump_json()), "api_version": "v9.9"}))


def test_version_schema__decimal_rejected_result_with_a_fill_is_refused_by_the_schema() -> None:
    validator = jsonschema.Draft202012Validator(version_schema(Topic.ORDER_RESULTS, "v2.0"))
    good = json.loads(
        convert(
            Topic.ORDER_RESULTS,
            _result_v11(status="REJECTED", filled_quantity=0.0, average_price=None),
            "v2.0",
        ).model_dump_json()
    )
    assert not list(validator.iter_errors(good))
    assert list(validator.iter_errors({**good, "filled_quantity": "0.5"}))


def test_v2__negative_zero_is_written_as_zero_and_reads_back() -> None:
    v2 = convert(Topic.MARKET_DATA, _trade(volume=-0.0), "v2.0")
    assert json.loads(v2.model_dump_json())["quantity"] == "0.0"
    assert MarketDataV2.model_validate_json(v2.model_dump_json()) == v2
