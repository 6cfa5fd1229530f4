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
_MAX_LOTS = 2**53
"""The most lots an order may have: up to here a float counts lots one by one, so the size is a
whole number of lots; past it (a price near zero, e.g. 1e-300) it is not, and at the far end it
is not even finite (``math.floor`` would raise). Such a signal is rejected, like one below a lot."""
_TOO_MANY_LOTS = "order size above 2^53 lots"


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
    Every contract-valid signal is decided without raising, however extreme its price: a
    size that is not a whole number of lots a float can count (more than 2^53) is rejected.
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

    def _exposure_marked(self, symbol: str, price: float) -> float:
        # exposure() as it is once ``symbol`` is marked at ``price``, without marking it yet.
        marks, positions = self.marks, self.positions
        return sum(abs(qty) * (price if s == symbol else marks.get(s, 0.0)) for s, qty in positions.items())

    def _decide(self, signal: SignalView) -> Decision:
        # The decision is worked out on locals and the state written only once it is made: a
        # signal that fails here (a bug) leaves positions and marks as they were, so its retry,
        # or a rebuild that skips it, sees the same state. Every decided signal marks its symbol.
        decision, position = self._judge(signal)
        self.marks[signal.symbol] = signal.price
        if decision.order is not None:
            self.positions[signal.symbol] = position
        return decision

    def _judge(self, signal: SignalView) -> tuple[Decision, float]:
        # Any contract-valid signal is decided here without raising: prices run from 5e-324 to
        # 1.8e308, so sizes and notionals can overflow to infinity. Sizes are checked before
        # math.floor (which refuses infinity); a notional or exposure that overflows compares
        # above every limit, so such a growth is rejected by the limit it breaks.
        limits, symbol, price = self.limits, signal.symbol, signal.price
        current = self.positions.get(symbol, 0.0)
        if limits.kill_switch:
            return Decision(None, "kill switch is on"), current
        notional = limits.max_order_notional * min(1.0, max(0.1, signal.strength))
        lots = notional / price / limits.quantity_step
        if not lots <= _MAX_LOTS:  # infinity too
            return Decision(None, _TOO_MANY_LOTS), current
        quantity = round(math.floor(lots) * limits.quantity_step, 10)
        if not math.isfinite(quantity):  # a lot size near the float maximum: the product can round up
            return Decision(None, _TOO_MANY_LOTS), current
        if quantity <= 0:
            return Decision(None, "order size below one lot"), current
        signed = quantity if signal.side == "BUY" else -quantity
        new_position = current + signed
        if new_position == current:
            # Absorbed by a position so large that a float cannot add it: the position would not
            # follow the order, and the limits below (which look at the change) would not see it.
            return Decision(None, f"order size below the precision of the position on {symbol}"), current
        if abs(new_position) > abs(current):  # the limits bound growth; a reduction always passes
            if abs(new_position) * price > limits.max_position_notional:
                return Decision(None, f"position limit {limits.max_position_notional:g} on {symbol}"), current
            growth = (abs(new_position) - abs(current)) * price
            if self._exposure_marked(symbol, price) + growth > limits.max_exposure_notional:
                return Decision(None, f"exposure limit {limits.max_exposure_notional:g}"), current
        order = {
            "order_id": f"ord-{signal.signal_id}",
            "signal_id": signal.signal_id,
            "symbol": symbol,
            "side": signal.side,
            "order_type": "MARKET",
            "quantity": quantity,
            "price": price,
        }
        return Decision(order), round(new_position, 10)
