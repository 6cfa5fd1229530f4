"""The execution service's business logic: a deterministic paper venue, in exact decimals.

An order's size and price arrive as :class:`~decimal.Decimal` (contract v2.0) or as floats (v1.0,
the legacy path); a float is read as its shortest round-tripping decimal, exactly as the declared
v1 -> v2 converter reads it, so both paths fill the same order identically. Every amount of the
fill is a ``Decimal``; the only rounding is the one stated below (half to even, 8 decimals for
prices and fees, the lot size for partial fills).

Every valid order gets a valid result, never an exception, and the same one on both paths: a fill
an order result could not carry is ``REJECTED`` with the reason. A result's price is > 0, a fill's
size > 0 (one lot dearer than the venue fills is no partial fill), and each amount an exact decimal
of at most :data:`~core.versions.fields.DECIMAL_MAX_CHARS` characters (contract v2.0; any such value
is also within a v1.0 float's range). Any finite float makes a valid v1.0 order: an extreme one (a
price of ``1e100``, a size of ``5e-324``) gets a ``REJECTED`` result here on the legacy path, while
on the Pydantic path the v1 -> v2 conversion refuses it before the venue (``version_conversion``).
"""

from __future__ import annotations

from decimal import ROUND_FLOOR, ROUND_HALF_EVEN, Context, Decimal, localcontext
from typing import Any, Protocol

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.versions.changes import float_to_decimal
from core.versions.fields import DECIMAL_MAX_CHARS, plain_decimal

__all__ = ["OrderView", "PaperVenue", "VenueParams", "exact"]


class VenueParams(BaseSettings):
    """Paper-venue costs (env: EXECUTION_FEE_BPS, EXECUTION_SLIPPAGE_BPS, ...)."""

    model_config = SettingsConfigDict(env_prefix="EXECUTION_", frozen=True, extra="ignore")

    fee_bps: float = Field(
        default=10.0, ge=0, allow_inf_nan=False, description="fee on fill notional, bps (>= 0)"
    )
    slippage_bps: float = Field(
        default=5.0, ge=0, allow_inf_nan=False, description="adverse move of MARKET fills, bps (>= 0)"
    )
    max_fill_notional: float = Field(
        default=900.0, gt=0, allow_inf_nan=False, description="larger orders fill partially, quote (> 0)"
    )
    min_notional: float = Field(
        default=10.0, ge=0, allow_inf_nan=False, description="smaller orders are rejected, quote (>= 0)"
    )
    quantity_step: float = Field(
        default=1e-6, gt=0, allow_inf_nan=False, description="lot size in base (> 0)"
    )


class OrderView(Protocol):
    """What the venue reads of an order (both paths provide it)."""

    order_id: str
    symbol: str
    side: str
    order_type: str
    quantity: float | Decimal
    price: float | Decimal | None


class PaperVenue:
    """Fills orders deterministically: MARKET at the reference price plus slippage, LIMIT at the limit."""

    def __init__(self, params: VenueParams | None = None) -> None:
        self.params = p = params or VenueParams()
        # The settings as exact decimals, once (each float read as its shortest decimal: 10.0 bps
        # is exactly 0.001 of the notional).
        self._buy_slip = 1 + exact(p.slippage_bps) / _BPS
        self._sell_slip = 1 - exact(p.slippage_bps) / _BPS
        self._fee_rate = exact(p.fee_bps) / _BPS
        self._min_notional = exact(p.min_notional)
        self._max_notional = exact(p.max_fill_notional)
        self._lot = exact(p.quantity_step)
        self._too_dear = f"one lot ({p.quantity_step:g}) costs more than the paper venue fills"

    def fill(self, order: OrderView) -> dict[str, Any]:
        """The order result's values in contract v2.0 terms (sizes, price, fee as ``Decimal``),
        ``ordered_quantity`` the order's size; never raises for a valid order.
        ``filled_quantity <= ordered_quantity`` always (nothing when rejected)."""
        with localcontext(_CONTEXT):
            return self._fill(order)

    def _fill(self, order: OrderView) -> dict[str, Any]:
        p = self.params
        ordered = exact(order.quantity)
        base = {
            "order_id": order.order_id,
            "symbol": order.symbol,
            "side": str(order.side),
            "simulated": True,
            "ordered_quantity": ordered,
        }
        if order.price is None:
            return {**base, **_rejected("no reference price for a paper fill")}
        reference = exact(order.price)
        if str(order.order_type) == "MARKET":
            slipped = reference * (self._buy_slip if order.side == "BUY" else self._sell_slip)
            fill_price = _to_price_step(slipped)
            if fill_price <= 0:  # at most half a step, or slippage of 100% and more
                return {**base, **_rejected("fill price not above 0 at 8 decimals")}
        else:
            fill_price = reference
        if not _carried(fill_price):
            return {**base, **_rejected(_uncarried("price"))}
        if ordered * fill_price < self._min_notional:
            return {**base, **_rejected(f"notional below minimum {p.min_notional:g}")}
        quantity, status = ordered, "FILLED"
        if quantity * fill_price > self._max_notional:
            steps = (self._max_notional / fill_price / self._lot).to_integral_value(ROUND_FLOOR)
            if not steps:  # a fill of nothing is no fill (a PARTIALLY_FILLED result has a size > 0)
                return {**base, **_rejected(self._too_dear)}
            quantity, status = steps * self._lot, "PARTIALLY_FILLED"
        if not _carried(quantity):
            return {**base, **_rejected(_uncarried("size"))}
        fee = _to_price_step(quantity * fill_price * self._fee_rate)
        if not _carried(fee):
            return {**base, **_rejected(_uncarried("fee"))}
        return {
            **base,
            "status": status,
            "filled_quantity": quantity,
            "average_price": fill_price,
            "fee": fee,
            "reason": None if status == "FILLED" else "paper venue depth exhausted",
        }


_CONTEXT = Context(prec=80, rounding=ROUND_HALF_EVEN)
"""Products of two 64-character decimals stay exact before the stated rounding (not 28 digits)."""
_BPS = Decimal(10_000)
_PRICE_STEP = Decimal("1E-8")  # fill prices and fees: 8 decimals, as the float venue rounded them
_ZERO = Decimal(0)


def exact(value: float | Decimal) -> Decimal:
    """``value`` as an exact decimal: a ``Decimal`` unchanged, a float (or int) as its shortest
    round-tripping decimal (``0.1`` -> ``Decimal("0.1")``), as the v1 -> v2 converter reads it."""
    if isinstance(value, Decimal):
        return value
    return float_to_decimal(float(value))


def _to_price_step(value: Decimal) -> Decimal:
    """``value`` rounded half to even to 8 decimals; one too large for a result to carry is left
    as it is (rounding it would need more digits than the context has: ``InvalidOperation``)."""
    if value.adjusted() >= DECIMAL_MAX_CHARS:
        return value
    return value.quantize(_PRICE_STEP, ROUND_HALF_EVEN)


def _carried(value: Decimal) -> bool:
    """Whether an order result can carry ``value`` (>= 0): written plain, at most
    ``DECIMAL_MAX_CHARS`` characters, as contract v2.0 requires of every amount."""
    text = str(value)  # the plain form already, unless the exponent is large or very negative
    if "E" not in text:
        return len(text) <= DECIMAL_MAX_CHARS
    # The adjusted exponent first: 1E+300 fails without writing out its 301 digits.
    return abs(value.adjusted()) < DECIMAL_MAX_CHARS and len(plain_decimal(value)) <= DECIMAL_MAX_CHARS


def _uncarried(what: str) -> str:
    return f"the fill's {what} does not fit an order result (at most {DECIMAL_MAX_CHARS} characters)"


def _rejected(reason: str) -> dict[str, Any]:
    return {
        "status": "REJECTED",
        "filled_quantity": _ZERO,
        "average_price": None,
        "fee": _ZERO,
        "reason": reason,
    }
