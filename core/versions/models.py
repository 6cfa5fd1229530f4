"""The contract versions after v1.0: v1.1 (orders, order results) and v2.0 (every topic).

The v1.0 classes stay in :mod:`core.domain.contracts` untouched (public API). These classes are
separate, not subclasses, so a v1.1 order is never mistaken for a v1.0 one (``isinstance``).
What changed between versions, and how to convert, is declared once in
:mod:`core.versions.declaration`; a test checks these classes against that declaration.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, ClassVar, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, Strict, ValidationError, model_validator

from core.domain.contracts import (
    FINITE_MAX,
    Identifier,
    OrderStatus,
    OrderType,
    Price,
    Quantity,
    Side,
    Symbol,
    TimestampMs,
)
from core.domain.time_units import explain_validation_error
from core.versions.fields import DecimalPrice, DecimalQuantity, PositiveDecimalQuantity, TimeInForce

__all__ = [
    "MarketDataV2",
    "OrderResultV1_1",
    "OrderResultV2",
    "OrderV1_1",
    "OrderV2",
    "SignalV2",
    "VersionedModel",
]

_CONFIG = ConfigDict(frozen=True, extra="ignore", use_enum_values=False, validate_default=True)

_ClientOrderId = Annotated[
    str | None,
    Field(
        max_length=64,
        description="The producer's own id for the order; null when none. On the order only: no order "
        "result carries it (a result names its order by order_id).",
    ),
]
_Tif = Annotated[TimeInForce, Field(description="GTC (default, what v1.0 meant) or IOC.")]


class VersionedModel(BaseModel):
    """A contract of a later version: built in code, ``api_version`` may be left out (it can only
    be the class's :attr:`API_VERSION`); a wire message must carry it."""

    API_VERSION: ClassVar[str]

    def __init__(self, /, **data: Any) -> None:
        data.setdefault("api_version", self.API_VERSION)
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise explain_validation_error(exc) from None

    __init__.__pydantic_base_init__ = True  # type: ignore[attr-defined]  # as in core.domain.contracts


def _order_rules(order_type: OrderType, price: object) -> None:
    if order_type is OrderType.LIMIT and price is None:
        raise ValueError("a LIMIT order needs a price")


def _result_rules(
    status: OrderStatus,
    filled: float | Decimal,
    average_price: object,
    ordered: float | Decimal | None,
) -> None:
    is_fill = status in (OrderStatus.FILLED, OrderStatus.PARTIALLY_FILLED)
    if is_fill and (average_price is None or filled <= 0):
        raise ValueError(f"a {status.value} result needs filled_quantity > 0 and average_price")
    if not is_fill and (filled != 0 or average_price is not None):
        raise ValueError(
            f"a {status.value} result carries no fill: filled_quantity must be 0 and average_price null"
        )
    # The rules ordered_quantity enables (v1.1): nothing fills beyond what was ordered.
    if ordered is not None and filled > ordered:
        raise ValueError(f"filled_quantity {filled} exceeds ordered_quantity {ordered}")


class OrderV1_1(VersionedModel):  # noqa: N801 - the version is part of the public name
    """v1.1 of ``orders``: v1.0 plus ``time_in_force`` and ``client_order_id`` (additive)."""

    API_VERSION: ClassVar[str] = "v1.1"
    model_config = _CONFIG

    api_version: Literal["v1.1"]
    order_id: Identifier
    signal_id: Identifier
    symbol: Symbol
    side: Side
    order_type: OrderType
    quantity: Annotated[
        float,
        Strict(),
        Field(gt=0, allow_inf_nan=False, json_schema_extra={"unit": "base currency", "maximum": FINITE_MAX}),
    ]
    price: Price | None = None
    time_in_force: _Tif = TimeInForce.GTC
    client_order_id: _ClientOrderId = None
    timestamp: TimestampMs

    @model_validator(mode="after")
    def _limit_orders_have_a_price(self) -> Self:
        _order_rules(self.order_type, self.price)
        return self


class OrderResultV1_1(VersionedModel):  # noqa: N801
    """v1.1 of ``order_results``: v1.0 plus ``ordered_quantity`` (additive; null when unknown),
    so filled <= ordered can be checked (a REJECTED/CANCELLED result fills nothing, as in v1.0)."""

    API_VERSION: ClassVar[str] = "v1.1"
    model_config = _CONFIG

    api_version: Literal["v1.1"]
    order_id: Identifier
    symbol: Symbol
    side: Side
    status: OrderStatus
    ordered_quantity: Annotated[
        Quantity | None, Field(description="Size the order asked for; null when the producer did not know.")
    ] = None
    filled_quantity: Quantity
    average_price: Price | None = None
    fee: Annotated[
        float,
        Strict(),
        Field(ge=0, allow_inf_nan=False, json_schema_extra={"unit": "quote currency", "maximum": FINITE_MAX}),
    ]
    reason: Annotated[str | None, Field(max_length=200)] = None
    simulated: Annotated[bool, Strict()]
    timestamp: TimestampMs

    @model_validator(mode="after")
    def _fills_are_consistent(self) -> Self:
        _result_rules(self.status, self.filled_quantity, self.average_price, self.ordered_quantity)
        return self


class MarketDataV2(VersionedModel):
    """v2.0 of ``market_data``: exact decimal ``price``/``quantity`` (``volume`` renamed)."""

    API_VERSION: ClassVar[str] = "v2.0"
    model_config = _CONFIG

    api_version: Literal["v2.0"]
    symbol: Symbol
    price: DecimalPrice
    quantity: DecimalQuantity
    side: Side
    venue: Annotated[str, Field(min_length=1, max_length=32)]
    timestamp: TimestampMs
    trade_id: Annotated[str | None, Field(max_length=64)] = None


class SignalV2(VersionedModel):
    """v2.0 of ``signals``: the reference ``price`` as an exact decimal."""

    API_VERSION: ClassVar[str] = "v2.0"
    model_config = _CONFIG

    api_version: Literal["v2.0"]
    signal_id: Identifier
    symbol: Symbol
    side: Side
    price: DecimalPrice
    strength: Annotated[float, Strict(), Field(ge=0, le=1, allow_inf_nan=False)]
    reason: Annotated[str, Field(max_length=200)]
    timestamp: TimestampMs


class OrderV2(VersionedModel):
    """v2.0 of ``orders``: v1.1 with ``quantity``/``price`` as exact decimals."""

    API_VERSION: ClassVar[str] = "v2.0"
    model_config = _CONFIG

    api_version: Literal["v2.0"]
    order_id: Identifier
    signal_id: Identifier
    symbol: Symbol
    side: Side
    order_type: OrderType
    quantity: PositiveDecimalQuantity
    price: DecimalPrice | None = None
    time_in_force: _Tif = TimeInForce.GTC
    client_order_id: _ClientOrderId = None
    timestamp: TimestampMs

    @model_validator(mode="after")
    def _limit_orders_have_a_price(self) -> Self:
        _order_rules(self.order_type, self.price)
        return self


class OrderResultV2(VersionedModel):
    """v2.0 of ``order_results``: v1.1 with sizes, price and fee as exact decimals."""

    API_VERSION: ClassVar[str] = "v2.0"
    model_config = _CONFIG

    api_version: Literal["v2.0"]
    order_id: Identifier
    symbol: Symbol
    side: Side
    status: OrderStatus
    ordered_quantity: DecimalQuantity | None = None
    filled_quantity: DecimalQuantity
    average_price: DecimalPrice | None = None
    fee: DecimalQuantity
    reason: Annotated[str | None, Field(max_length=200)] = None
    simulated: Annotated[bool, Strict()]
    timestamp: TimestampMs

    @model_validator(mode="after")
    def _fills_are_consistent(self) -> Self:
        _result_rules(self.status, self.filled_quantity, self.average_price, self.ordered_quantity)
        return self
