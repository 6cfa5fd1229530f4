"""The practical floor: msgspec Structs mirroring the v1.0 contracts, same constraints.

Field for field as :mod:`core.domain.contracts`: types (strict, as msgspec always is: no
string-to-number, no bool-as-int), bounds and lengths through ``msgspec.Meta``, the symbol
pattern, enums as literals, and the two cross-field rules in ``__post_init__``. JSON has no
NaN/infinity tokens and msgspec refuses them, so finiteness holds too.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from core.domain.contracts import MAX_TIMESTAMP_MS, MIN_TIMESTAMP_MS
from core.topics import Topic

__all__ = ["STRUCTS"]

ApiVersion = Literal["v1.0"]
Side = Literal["BUY", "SELL"]
Timestamp = Annotated[int, msgspec.Meta(ge=MIN_TIMESTAMP_MS, le=MAX_TIMESTAMP_MS)]
Symbol = Annotated[str, msgspec.Meta(min_length=1, max_length=32, pattern=r"^[A-Z0-9]+(?:[/_-][A-Z0-9]+)?$")]
Price = Annotated[float, msgspec.Meta(gt=0)]
Quantity = Annotated[float, msgspec.Meta(ge=0)]
Identifier = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]


class MarketData(msgspec.Struct, frozen=True):
    """Mirror of ``MarketDataV1``."""

    api_version: ApiVersion
    symbol: Symbol
    price: Price
    volume: Quantity
    side: Side
    venue: Annotated[str, msgspec.Meta(min_length=1, max_length=32)]
    timestamp: Timestamp
    trade_id: Annotated[str, msgspec.Meta(max_length=64)] | None = None


class Signal(msgspec.Struct, frozen=True):
    """Mirror of ``SignalV1``."""

    api_version: ApiVersion
    signal_id: Identifier
    symbol: Symbol
    side: Side
    price: Price
    strength: Annotated[float, msgspec.Meta(ge=0, le=1)]
    reason: Annotated[str, msgspec.Meta(max_length=200)]
    timestamp: Timestamp


class Order(msgspec.Struct, frozen=True):
    """Mirror of ``OrderV1`` (a LIMIT order needs a price)."""

    api_version: ApiVersion
    order_id: Identifier
    signal_id: Identifier
    symbol: Symbol
    side: Side
    order_type: Literal["MARKET", "LIMIT"]
    quantity: Annotated[float, msgspec.Meta(gt=0)]
    timestamp: Timestamp
    price: Price | None = None

    def __post_init__(self) -> None:
        if self.order_type == "LIMIT" and self.price is None:
            raise ValueError("a LIMIT order needs a price")


class OrderResult(msgspec.Struct, frozen=True):
    """Mirror of ``OrderResultV1`` (a fill needs a size and a price)."""

    api_version: ApiVersion
    order_id: Identifier
    symbol: Symbol
    side: Side
    status: Literal["FILLED", "PARTIALLY_FILLED", "REJECTED", "CANCELLED"]
    filled_quantity: Quantity
    fee: Annotated[float, msgspec.Meta(ge=0)]
    simulated: bool
    timestamp: Timestamp
    average_price: Price | None = None
    reason: Annotated[str, msgspec.Meta(max_length=200)] | None = None

    def __post_init__(self) -> None:
        filled = self.status in ("FILLED", "PARTIALLY_FILLED")
        if filled and (self.average_price is None or self.filled_quantity <= 0):
            raise ValueError(f"a {self.status} result needs filled_quantity > 0 and average_price")


STRUCTS: dict[Topic, type[msgspec.Struct]] = {
    Topic.MARKET_DATA: MarketData,
    Topic.SIGNALS: Signal,
    Topic.ORDERS: Order,
    Topic.ORDER_RESULTS: OrderResult,
}
"""The mirror of every topic's contract."""
