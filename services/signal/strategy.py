"""The signal service's business logic: per-symbol momentum, a pure function of the trades seen.

Written once against the fields both paths provide (symbol, price, timestamp), so
legacy and Pydantic decoding give the same signals for the same trades.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any, Protocol

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["MomentumStrategy", "SignalParams", "TradeView"]


class SignalParams(BaseSettings):
    """Strategy thresholds (env: SIGNAL_WINDOW, SIGNAL_THRESHOLD_BPS, SIGNAL_COOLDOWN)."""

    model_config = SettingsConfigDict(env_prefix="SIGNAL_", frozen=True, extra="ignore")

    window: int = Field(
        default=20, ge=2, le=10_000, description="trades per symbol in the momentum window (>= 2)"
    )
    threshold_bps: float = Field(
        default=25.0,
        gt=0,
        allow_inf_nan=False,
        description="price move over the window, in basis points (> 0)",
    )
    cooldown: int = Field(default=20, ge=0, description="trades of a symbol to skip after it fired (>= 0)")


class TradeView(Protocol):
    """What the strategy reads of a market-data message (both paths provide it)."""

    symbol: str
    price: float
    timestamp: int


@dataclass
class _SymbolState:
    prices: deque[float]
    last_timestamp: int = -1
    cooldown_left: int = 0


@dataclass
class MomentumStrategy:
    """Fires BUY when the price rose ``threshold_bps`` over the last ``window`` trades, SELL when it fell.

    Per symbol, trades must arrive in time order: a trade not newer than the last one
    seen for its symbol is ignored, which also makes a redelivered trade harmless.
    """

    params: SignalParams = field(default_factory=SignalParams)
    _state: dict[str, _SymbolState] = field(default_factory=dict)
    ignored: int = 0

    def on_trade(self, trade: TradeView) -> dict[str, Any] | None:
        """The values of the signal this trade fires (for ``codec.build``), or ``None``."""
        state = self._state.get(trade.symbol)
        if state is None:
            state = self._state[trade.symbol] = _SymbolState(prices=deque(maxlen=self.params.window))
        if trade.timestamp <= state.last_timestamp:
            self.ignored += 1
            return None
        state.last_timestamp = trade.timestamp
        state.prices.append(trade.price)
        if state.cooldown_left > 0:
            state.cooldown_left -= 1
            return None
        if len(state.prices) < self.params.window:
            return None
        move_bps = (trade.price / state.prices[0] - 1.0) * 10_000.0
        if abs(move_bps) < self.params.threshold_bps:
            return None
        state.cooldown_left = self.params.cooldown
        strength = round(min(1.0, abs(move_bps) / (4.0 * self.params.threshold_bps)), 6)
        return {
            "signal_id": f"sig-{trade.symbol}-{trade.timestamp}",
            "symbol": trade.symbol,
            "side": "BUY" if move_bps > 0 else "SELL",
            "price": trade.price,
            "strength": strength,
            "reason": f"momentum {move_bps:+.1f}bps over {self.params.window} trades",
        }
