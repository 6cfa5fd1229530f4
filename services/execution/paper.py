"""The execution service's business logic: a deterministic paper venue."""

from __future__ import annotations

import math
from typing import Any, Protocol

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["OrderView", "PaperVenue", "VenueParams"]


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
    quantity: float
    price: float | None


class PaperVenue:
    """Fills orders deterministically: MARKET at the reference price plus slippage, LIMIT at the limit."""

    def __init__(self, params: VenueParams | None = None) -> None:
        self.params = params or VenueParams()

    def fill(self, order: OrderView) -> dict[str, Any]:
        """The order result's values (for ``codec.build``); never raises for a valid order."""
        p = self.params
        base = {
            "order_id": order.order_id,
            "symbol": order.symbol,
            "side": str(order.side),
            "simulated": True,
        }
        if order.price is None:
            return {**base, **_rejected("no reference price for a paper fill")}
        reference = order.price
        if str(order.order_type) == "MARKET":
            direction = 1.0 if order.side == "BUY" else -1.0
            fill_price = round(reference * (1.0 + direction * p.slippage_bps / 10_000.0), 8)
        else:
            fill_price = reference
        if order.quantity * fill_price < p.min_notional:
            return {**base, **_rejected(f"notional below minimum {p.min_notional:g}")}
        quantity, status = order.quantity, "FILLED"
        if quantity * fill_price > p.max_fill_notional:
            steps = math.floor(p.max_fill_notional / fill_price / p.quantity_step)
            quantity, status = round(steps * p.quantity_step, 10), "PARTIALLY_FILLED"
        fee = round(quantity * fill_price * p.fee_bps / 10_000.0, 8)
        return {
            **base,
            "status": status,
            "filled_quantity": quantity,
            "average_price": fill_price,
            "fee": fee,
            "reason": None if status == "FILLED" else "paper venue depth exhausted",
        }


def _rejected(reason: str) -> dict[str, Any]:
    return {"status": "REJECTED", "filled_quantity": 0.0, "average_price": None, "fee": 0.0, "reason": reason}
