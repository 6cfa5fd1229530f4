"""The v1.0 message contracts of the pipeline: strict, frozen, documented.

These are the **strict** models: ``api_version`` and ``timestamp`` are required.
The lenient variants used during the migration live in :mod:`migration.lenient`
and decode into these same classes.

Units: prices in quote currency per unit of base currency, sizes in units of base
currency, fees in quote currency, timestamps in epoch **milliseconds** (UTC).
Consumers are tolerant readers: unknown fields are ignored.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, Strict, model_validator

__all__ = [
    "API_VERSION",
    "MAX_TIMESTAMP_MS",
    "MIN_TIMESTAMP_MS",
    "Contract",
    "MarketDataV1",
    "OrderResultV1",
    "OrderStatus",
    "OrderType",
    "OrderV1",
    "Side",
    "SignalV1",
]

API_VERSION = "v1.0"

# 2000-01-01T00:00:00Z and 2100-01-01T00:00:00Z in ms: a seconds value (about 1.7e9)
# or a microseconds value (about 1.7e15) falls outside and is refused.
MIN_TIMESTAMP_MS = 946_684_800_000
MAX_TIMESTAMP_MS = 4_102_444_800_000


class Side(StrEnum):
    """Direction of a trade, signal or order."""

    BUY = "BUY"
    SELL = "SELL"


class OrderType(StrEnum):
    """How an order is priced."""

    MARKET = "MARKET"
    LIMIT = "LIMIT"


class OrderStatus(StrEnum):
    """Outcome of an order at the venue (here: the paper venue)."""

    FILLED = "FILLED"
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    REJECTED = "REJECTED"
    CANCELLED = "CANCELLED"


ApiVersion = Annotated[
    Literal["v1.0"],
    Field(description="Contract version of this message; consumers reject versions they do not know."),
]
TimestampMs = Annotated[
    int,
    Strict(),
    Field(
        ge=MIN_TIMESTAMP_MS,
        le=MAX_TIMESTAMP_MS,
        description="When the event happened, in epoch milliseconds (UTC); a seconds value is refused.",
        json_schema_extra={"unit": "ms"},
    ),
]
Symbol = Annotated[
    str,
    Field(
        min_length=1,
        max_length=32,
        pattern=r"^[A-Z0-9]+(?:[/_-][A-Z0-9]+)?$",
        description="Instrument, upper case, e.g. 'BTC/USDT' or 'BTCUSDT'.",
        examples=["BTC/USDT"],
    ),
]
Price = Annotated[
    float,
    Strict(),
    Field(
        gt=0,
        allow_inf_nan=False,
        description="Price in quote currency per unit of base currency; finite and > 0.",
        json_schema_extra={"unit": "quote currency"},
    ),
]
Quantity = Annotated[
    float,
    Strict(),
    Field(
        ge=0,
        allow_inf_nan=False,
        description="Size in units of base currency; finite and >= 0.",
        json_schema_extra={"unit": "base currency"},
    ),
]
Identifier = Annotated[str, Field(min_length=1, max_length=64)]

_CONFIG = ConfigDict(frozen=True, extra="ignore", use_enum_values=False, validate_default=True)


class MarketDataV1(BaseModel):
    """One trade seen at a venue (published by ws on ``market_data``)."""

    model_config = _CONFIG

    api_version: ApiVersion
    symbol: Symbol
    price: Annotated[Price, Field(description="Trade price, quote currency per base unit; > 0.")]
    volume: Annotated[Quantity, Field(description="Traded size in base currency; >= 0.")]
    side: Annotated[Side, Field(description="Taker side of the trade: BUY or SELL.")]
    venue: Annotated[
        str,
        Field(min_length=1, max_length=32, description="Exchange the trade happened on, e.g. 'mexc'."),
    ]
    timestamp: Annotated[TimestampMs, Field(description="Trade time at the venue, epoch ms (UTC).")]
    trade_id: Annotated[
        str | None,
        Field(default=None, max_length=64, description="Venue trade id when the venue sends one."),
    ] = None


class SignalV1(BaseModel):
    """A trading intent derived from market data (published by signal on ``signals``)."""

    model_config = _CONFIG

    api_version: ApiVersion
    signal_id: Annotated[Identifier, Field(description="Deterministic id of this signal.")]
    symbol: Symbol
    side: Annotated[Side, Field(description="Direction the signal recommends.")]
    price: Annotated[Price, Field(description="Reference price when the signal fired; > 0.")]
    strength: Annotated[
        float,
        Strict(),
        Field(ge=0, le=1, allow_inf_nan=False, description="Confidence in [0, 1]; unitless."),
    ]
    reason: Annotated[
        str,
        Field(max_length=200, description="Human-readable cause, e.g. 'momentum +0.42% over 20'."),
    ]
    timestamp: Annotated[TimestampMs, Field(description="When the signal fired, epoch ms (UTC).")]


class OrderV1(BaseModel):
    """An order approved by risk (published by risk on ``orders``)."""

    model_config = _CONFIG

    api_version: ApiVersion
    order_id: Annotated[Identifier, Field(description="Deterministic id, unique per order.")]
    signal_id: Annotated[Identifier, Field(description="The signal this order executes.")]
    symbol: Symbol
    side: Annotated[Side, Field(description="BUY or SELL.")]
    order_type: Annotated[OrderType, Field(description="MARKET or LIMIT.")]
    quantity: Annotated[
        float,
        Strict(),
        Field(
            gt=0,
            allow_inf_nan=False,
            description="Order size in base currency; > 0.",
            json_schema_extra={"unit": "base currency"},
        ),
    ]
    price: Annotated[
        Price | None,
        Field(
            description="Quote per base unit. LIMIT: the limit price (required). MARKET: the reference "
            "price risk priced the order at, used by the paper venue; null when unknown."
        ),
    ] = None
    timestamp: Annotated[TimestampMs, Field(description="When risk approved the order, epoch ms (UTC).")]

    @model_validator(mode="after")
    def _limit_orders_have_a_price(self) -> Self:
        if self.order_type is OrderType.LIMIT and self.price is None:
            raise ValueError("a LIMIT order needs a price")
        return self


class OrderResultV1(BaseModel):
    """What happened to an order (published by execution on ``order_results``)."""

    model_config = _CONFIG

    api_version: ApiVersion
    order_id: Annotated[Identifier, Field(description="The order this result belongs to.")]
    symbol: Symbol
    side: Annotated[Side, Field(description="BUY or SELL, as ordered.")]
    status: Annotated[OrderStatus, Field(description="FILLED, PARTIALLY_FILLED, REJECTED or CANCELLED.")]
    filled_quantity: Annotated[Quantity, Field(description="Filled size in base currency; >= 0.")]
    average_price: Annotated[
        Price | None,
        Field(description="Volume-weighted fill price, quote per base unit; null if nothing filled."),
    ] = None
    fee: Annotated[
        float,
        Strict(),
        Field(
            ge=0,
            allow_inf_nan=False,
            description="Fee charged, in quote currency; >= 0.",
            json_schema_extra={"unit": "quote currency"},
        ),
    ]
    reason: Annotated[
        str | None,
        Field(max_length=200, description="Why the order was rejected or cancelled; null otherwise."),
    ] = None
    simulated: Annotated[
        bool,
        Strict(),  # like every other field: 1 or "true" is a wrong type, not a boolean
        Field(description="True when filled by the paper venue, not a real exchange."),
    ]
    timestamp: Annotated[TimestampMs, Field(description="When the result was decided, epoch ms (UTC).")]

    @model_validator(mode="after")
    def _fills_have_a_price(self) -> Self:
        filled = self.status in (OrderStatus.FILLED, OrderStatus.PARTIALLY_FILLED)
        if filled and (self.average_price is None or self.filled_quantity <= 0):
            raise ValueError(f"a {self.status.value} result needs filled_quantity > 0 and average_price")
        return self


Contract = MarketDataV1 | SignalV1 | OrderV1 | OrderResultV1
"""Any v1.0 contract."""
