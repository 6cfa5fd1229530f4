"""The risk service's business logic: size a signal into an order, or reject it against the limits."""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Protocol

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Decision", "RiskEngine", "RiskLimits", "SignalView"]

_REMEMBERED_SIGNALS = 100_000


class RiskLimits(BaseSettings):
    """Limits in quote currency (env: RISK_MAX_ORDER_NOTIONAL, ..., RISK_KILL_SWITCH)."""

    model_config = SettingsConfigDict(env_prefix="RISK_", frozen=True, extra="ignore")

    max_order_notional: float = Field(
        default=1_000.0, gt=0, allow_inf_nan=False, description="quote per order (> 0)"
    )
    max_position_notional: float = Field(
        default=3_000.0, gt=0, allow_inf_nan=False, description="absolute position per symbol, quote (> 0)"
    )
    max_exposure_notional: float = Field(
        default=8_000.0, gt=0, allow_inf_nan=False, description="sum of absolute positions, quote (> 0)"
    )
    quantity_step: float = Field(
        default=1e-6, gt=0, allow_inf_nan=False, description="lot size in base (> 0)"
    )
    kill_switch: bool = Field(default=False, description="true rejects every signal (true/false)")

    def per_partition(self, partitions: int) -> RiskLimits:
        """The limits one partition's engine applies when signals are split ``partitions`` ways.

        Per-symbol limits are unchanged (a symbol lives in one partition). The exposure
        limit spans symbols, so each partition gets an equal share: the sum over partitions
        never exceeds the configured limit, and each partition's decisions depend on its
        own input alone (the same, whichever instance owns it and whenever it moves).
        """
        if partitions <= 1:
            return self
        return self.model_copy(update={"max_exposure_notional": self.max_exposure_notional / partitions})


class SignalView(Protocol):
    """What risk reads of a signal (both paths provide it)."""

    signal_id: str
    symbol: str
    side: str
    price: float
    strength: float


@dataclass(frozen=True, slots=True)
class Decision:
    """An approved order's values, or the reason the signal was rejected."""

    order: dict[str, Any] | None
    rejection: str | None = None
    duplicate: bool = False


@dataclass
class RiskEngine:
    """Sizes each signal to ``max_order_notional * strength`` and applies the limits.

    Positions follow approved orders (assumed filled). A redelivered signal gets the
    decision it got the first time, so at-least-once delivery cannot double a position.
    """

    limits: RiskLimits = field(default_factory=RiskLimits)
    positions: dict[str, float] = field(default_factory=dict)
    marks: dict[str, float] = field(default_factory=dict)
    _decided: OrderedDict[str, Decision] = field(default_factory=OrderedDict)

    def on_signal(self, signal: SignalView) -> Decision:
        """Approve (order values for ``codec.build``) or reject ``signal``."""
        earlier = self._decided.get(signal.signal_id)
        if earlier is not None:
            return Decision(earlier.order, earlier.rejection, duplicate=True)
        decision = self._decide(signal)
        self._decided[signal.signal_id] = decision
        if len(self._decided) > _REMEMBERED_SIGNALS:
            self._decided.popitem(last=False)
        return decision

    def exposure(self) -> float:
        """Sum of absolute positions at their last marks, in quote currency."""
        return sum(abs(qty) * self.marks.get(sym, 0.0) for sym, qty in self.positions.items())

    def _decide(self, signal: SignalView) -> Decision:
        limits = self.limits
        self.marks[signal.symbol] = signal.price
        if limits.kill_switch:
            return Decision(None, "kill switch is on")
        notional = limits.max_order_notional * min(1.0, max(0.1, signal.strength))
        steps = math.floor(notional / signal.price / limits.quantity_step)
        quantity = round(steps * limits.quantity_step, 10)
        if quantity <= 0:
            return Decision(None, "order size below one lot")
        signed = quantity if signal.side == "BUY" else -quantity
        current = self.positions.get(signal.symbol, 0.0)
        new_position = current + signed
        if abs(new_position) * signal.price > limits.max_position_notional and abs(new_position) > abs(
            current
        ):
            return Decision(None, f"position limit {limits.max_position_notional:g} on {signal.symbol}")
        exposure_after = self.exposure() + (abs(new_position) - abs(current)) * signal.price
        if exposure_after > limits.max_exposure_notional and abs(new_position) > abs(current):
            return Decision(None, f"exposure limit {limits.max_exposure_notional:g}")
        self.positions[signal.symbol] = round(new_position, 10)
        return Decision(
            {
                "order_id": f"ord-{signal.signal_id}",
                "signal_id": signal.signal_id,
                "symbol": signal.symbol,
                "side": signal.side,
                "order_type": "MARKET",
                "quantity": quantity,
                "price": signal.price,
            }
        )
