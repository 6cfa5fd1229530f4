"""Hypothesis strategies for valid v1.0 messages, derived from the contracts' constraints.

Every strategy here produces values that the strict contract accepts (the tests in
``test_contracts.py`` check that), so other suites can use them as "any valid
message" without re-deriving the rules:

- prices finite and > 0, sizes finite and >= 0 (order quantity > 0), strength in [0, 1];
- sides, order types and statuses from their enums (as the string values a wire carries);
- a LIMIT order always has a price; a MARKET order has a reference price or ``None``;
- a FILLED / PARTIALLY_FILLED result has ``filled_quantity > 0`` and an ``average_price``;
  a REJECTED / CANCELLED one has ``filled_quantity`` 0 and no ``average_price``;
- symbols that match the contract's pattern and length;
- free text (reason, ids, venue) with arbitrary unicode, within the length limits;
- timestamps in epoch ms inside the plausible range;
- ``None`` for optional fields.

``contract_values(topic)`` gives the plain JSON-compatible values of a full v1.0
message; ``legacy_values(topic)`` the subset a legacy producer sends (no
``api_version``, and no ``timestamp`` except on market data).
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from core.domain.contracts import (
    API_VERSION,
    MAX_TIMESTAMP_MS,
    MIN_TIMESTAMP_MS,
    MarketDataV1,
    OrderResultV1,
    OrderStatus,
    OrderType,
    OrderV1,
    Side,
    SignalV1,
)
from core.topics import Topic

__all__ = [
    "CONTRACT_CLASSES",
    "LEGACY_FIELDS",
    "contract_messages",
    "contract_values",
    "identifiers",
    "json_values",
    "legacy_values",
    "market_data_values",
    "order_result_values",
    "order_types",
    "order_values",
    "positive_sizes",
    "prices",
    "reasons",
    "sides",
    "signal_values",
    "sizes",
    "statuses",
    "strengths",
    "symbols",
    "timestamps_ms",
    "venues",
]

CONTRACT_CLASSES = {
    Topic.MARKET_DATA: MarketDataV1,
    Topic.SIGNALS: SignalV1,
    Topic.ORDERS: OrderV1,
    Topic.ORDER_RESULTS: OrderResultV1,
}
"""The v1.0 contract of each topic."""

LEGACY_FIELDS: dict[Topic, tuple[str, ...]] = {
    Topic.MARKET_DATA: ("symbol", "price", "volume", "side", "venue", "timestamp"),
    Topic.SIGNALS: ("signal_id", "symbol", "side", "price", "strength", "reason"),
    Topic.ORDERS: ("order_id", "signal_id", "symbol", "side", "order_type", "quantity", "price"),
    Topic.ORDER_RESULTS: (
        "order_id",
        "symbol",
        "side",
        "status",
        "filled_quantity",
        "average_price",
        "fee",
        "reason",
        "simulated",
    ),
}
"""The fields the legacy producers of each topic send (kept here so the strategies
do not depend on the legacy module)."""

timestamps_ms = st.integers(min_value=MIN_TIMESTAMP_MS, max_value=MAX_TIMESTAMP_MS)
"""Epoch milliseconds in the contracts' plausible range (2000..2100)."""

prices = st.floats(min_value=0.0, exclude_min=True, allow_nan=False, allow_infinity=False)
"""Finite prices > 0 (subnormal to the largest float)."""

sizes = st.floats(min_value=0.0, allow_nan=False, allow_infinity=False)
"""Finite sizes >= 0."""

positive_sizes = st.floats(min_value=0.0, exclude_min=True, allow_nan=False, allow_infinity=False)
"""Finite sizes > 0."""

strengths = st.floats(min_value=0.0, max_value=1.0, allow_nan=False, allow_infinity=False)
"""Confidence in [0, 1]."""

_SYMBOL_PART = "[A-Z0-9]{1,15}"
symbols = st.from_regex(rf"{_SYMBOL_PART}(?:[/_-]{_SYMBOL_PART})?", fullmatch=True)
"""Symbols matching ``^[A-Z0-9]+(?:[/_-][A-Z0-9]+)?$`` and at most 32 characters."""

identifiers = st.text(min_size=1, max_size=64)
"""Ids: any unicode, 1..64 characters."""

venues = st.text(min_size=1, max_size=32)
"""Venue names: any unicode, 1..32 characters."""

reasons = st.text(max_size=200)
"""Free text up to 200 characters: any unicode (accents, CJK, emoji, control characters)."""

sides = st.sampled_from([s.value for s in Side])
order_types = st.sampled_from([t.value for t in OrderType])
statuses = st.sampled_from([s.value for s in OrderStatus])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
"""Any JSON value (finite floats; Python's ``json`` module also writes infinity, so it is excluded)."""


@st.composite
def market_data_values(draw: st.DrawFn) -> dict[str, Any]:
    """A valid ``MarketDataV1`` as plain values."""
    return {
        "api_version": API_VERSION,
        "symbol": draw(symbols),
        "price": draw(prices),
        "volume": draw(sizes),
        "side": draw(sides),
        "venue": draw(venues),
        "timestamp": draw(timestamps_ms),
        "trade_id": draw(st.none() | st.text(max_size=64)),
    }


@st.composite
def signal_values(draw: st.DrawFn) -> dict[str, Any]:
    """A valid ``SignalV1`` as plain values."""
    return {
        "api_version": API_VERSION,
        "signal_id": draw(identifiers),
        "symbol": draw(symbols),
        "side": draw(sides),
        "price": draw(prices),
        "strength": draw(strengths),
        "reason": draw(reasons),
        "timestamp": draw(timestamps_ms),
    }


@st.composite
def order_values(draw: st.DrawFn) -> dict[str, Any]:
    """A valid ``OrderV1``: LIMIT always priced, MARKET with a reference price or ``None``."""
    order_type = draw(order_types)
    price = draw(prices) if order_type == OrderType.LIMIT else draw(st.none() | prices)
    return {
        "api_version": API_VERSION,
        "order_id": draw(identifiers),
        "signal_id": draw(identifiers),
        "symbol": draw(symbols),
        "side": draw(sides),
        "order_type": order_type,
        "quantity": draw(positive_sizes),
        "price": price,
        "timestamp": draw(timestamps_ms),
    }


@st.composite
def order_result_values(draw: st.DrawFn) -> dict[str, Any]:
    """A valid ``OrderResultV1``: fills have a size > 0 and a price; others have neither."""
    status = draw(statuses)
    filled = status in (OrderStatus.FILLED, OrderStatus.PARTIALLY_FILLED)
    return {
        "api_version": API_VERSION,
        "order_id": draw(identifiers),
        "symbol": draw(symbols),
        "side": draw(sides),
        "status": status,
        "filled_quantity": draw(positive_sizes) if filled else 0.0,
        "average_price": draw(prices) if filled else None,
        "fee": draw(sizes),
        "reason": draw(st.none() | reasons),
        "simulated": draw(st.booleans()),
        "timestamp": draw(timestamps_ms),
    }


_VALUES = {
    Topic.MARKET_DATA: market_data_values,
    Topic.SIGNALS: signal_values,
    Topic.ORDERS: order_values,
    Topic.ORDER_RESULTS: order_result_values,
}


def contract_values(topic: Topic) -> st.SearchStrategy[dict[str, Any]]:
    """Plain JSON-compatible values of a full, valid v1.0 message of ``topic``."""
    return _VALUES[topic]()


def legacy_values(topic: Topic) -> st.SearchStrategy[dict[str, Any]]:
    """The values a legacy producer of ``topic`` sends (only the legacy class's fields)."""
    names = LEGACY_FIELDS[topic]
    return contract_values(topic).map(lambda values: {n: values[n] for n in names})


def contract_messages(topic: Topic) -> st.SearchStrategy[Any]:
    """Validated v1.0 contract instances of ``topic``."""
    return contract_values(topic).map(CONTRACT_CLASSES[topic].model_validate)
