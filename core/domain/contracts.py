"""The v1.0 message contracts of the pipeline: strict, frozen, documented.

These are the **strict** models: ``api_version`` and ``timestamp`` are required on the
wire (validation, the strict reader and the exported schema all say so). Code that builds
a contract with its constructor may leave ``api_version`` out: it can only be ``"v1.0"``.
The lenient variants used during the migration live in :mod:`migration.lenient`
and decode into these same classes.

Units: prices in quote currency per unit of base currency, sizes in units of base
currency, fees in quote currency, timestamps in epoch **milliseconds** (UTC).
Consumers are tolerant readers: unknown fields are ignored.
"""

from __future__ import annotations

import sys
from enum import StrEnum
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, Strict, ValidationError, model_validator

from core.domain.time_units import MAX_TIMESTAMP_MS, MIN_TIMESTAMP_MS, explain_validation_error

__all__ = [
    "API_VERSION",
    "FINITE_MAX",
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

API_VERSION: Literal["v1.0"] = "v1.0"

FINITE_MAX = sys.float_info.max
"""The largest finite float: every float field's schema states it as ``maximum``, so a JSON number
past the float range (``1e309``, read as infinity) is refused by the schema as by the codec
(which refuses non-finite numbers, ``allow_inf_nan=False``). NaN and Infinity are not JSON."""


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
        json_schema_extra={"unit": "quote currency", "maximum": FINITE_MAX},
    ),
]
Quantity = Annotated[
    float,
    Strict(),
    Field(
        ge=0,
        allow_inf_nan=False,
        description="Size in units of base currency; finite and >= 0.",
        json_schema_extra={"unit": "base currency", "maximum": FINITE_MAX},
    ),
]
Identifier = Annotated[str, Field(min_length=1, max_length=64)]


_CONFIG = ConfigDict(frozen=True, extra="ignore", use_enum_values=False, validate_default=True)


class _ContractModel(BaseModel):
    """What every v1.0 contract shares when built in code: ``api_version`` may be left out (it
    can only be ``"v1.0"``), and a refused timestamp in seconds says so (naming
    ``core.utils.clock.now_ms``/``to_ms``), also from ``model_validate``/``model_validate_json``.

    Only the constructor fills ``api_version``: validation (a wire message) still requires it.
    """

    def __init__(self, /, **data: Any) -> None:
        data.setdefault("api_version", API_VERSION)
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise explain_validation_error(exc) from None

    # Pydantic calls a model's own __init__ from every validation (validate_json included) unless it
    # is marked as the base one. Marked (as pydantic's RootModel marks its own), validation never
    # calls it: a wire message without api_version stays refused, and decoding pays nothing.
    __init__.__pydantic_base_init__ = True  # type: ignore[attr-defined]

    @classmethod
    def model_validate(cls, obj: Any, **kwargs: Any) -> Self:
        """:meth:`BaseModel.model_validate`, with timestamp unit hints in its errors."""
        try:
            return super().model_validate(obj, **kwargs)
        except ValidationError as exc:
            raise explain_validation_error(exc) from None

    @classmethod
    def model_validate_json(cls, json_data: str | bytes | bytearray, **kwargs: Any) -> Self:
        """:meth:`BaseModel.model_validate_json`, with timestamp unit hints in its errors."""
        try:
            return super().model_validate_json(json_data, **kwargs)
        except ValidationError as exc:
            raise explain_validation_error(exc) from None


class MarketDataV1(_ContractModel):
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


class SignalV1(_ContractModel):
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


class OrderV1(_ContractModel):
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
            json_schema_extra={"unit": "base currency", "maximum": FINITE_MAX},
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


class OrderResultV1(_ContractModel):
    """What happened to an order (published by execution on ``order_results``)."""

    model_config = _CONFIG

    api_version: ApiVersion
    order_id: Annotated[Identifier, Field(description="The order this result belongs to.")]
    symbol: Symbol
    side: Annotated[Side, Field(description="BUY or SELL, as ordered.")]
    status: Annotated[OrderStatus, Field(description="FILLED, PARTIALLY_FILLED, REJECTED or CANCELLED.")]
    filled_quantity: Annotated[
        Quantity,
        Field(description="Filled size in base currency; > 0 when FILLED/PARTIALLY_FILLED, 0 otherwise."),
    ]
    average_price: Annotated[
        Price | None,
        Field(
            description="Volume-weighted fill price, quote per base unit; null exactly when "
            "REJECTED/CANCELLED."
        ),
    ] = None
    fee: Annotated[
        float,
        Strict(),
        Field(
            ge=0,
            allow_inf_nan=False,
            description="Fee charged, in quote currency; >= 0.",
            json_schema_extra={"unit": "quote currency", "maximum": FINITE_MAX},
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
        if not filled and (self.filled_quantity != 0 or self.average_price is not None):
            raise ValueError(
                f"a {self.status.value} result carries no fill: "
                "filled_quantity must be 0 and average_price null"
            )
        return self


Contract = MarketDataV1 | SignalV1 | OrderV1 | OrderResultV1
"""Any v1.0 contract."""
