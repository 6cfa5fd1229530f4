"""The signal service's business logic: per-symbol momentum, a pure function of the trades seen
(and of the stream entry each came in, so a redelivery counts once).

Written once against the fields both paths provide (symbol, price, timestamp), so
legacy and Pydantic decoding give the same signals for the same trades.
"""

from __future__ import annotations

from collections import Counter, OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.domain.trades import TradeKey, TradeView, trade_key
from core.metrics import IgnoreReason
from core.redis.publisher import DEFAULT_CHUNK

__all__ = ["MomentumStrategy", "SignalParams", "TradeOutcome", "TradeView", "signal_id", "trade_key"]

_REMEMBERED_ENTRIES = 20_000
"""Deliveries remembered for dedupe. An entry comes back to the object that applied it only when
its batch could not be acknowledged, and the consumer then re-reads its own pending entries
before anything new: a few batches suffice. (Another instance starts from a rebuilt state.)"""
_REMEMBERED_TRADES = DEFAULT_CHUNK
"""Trade keys remembered per symbol: a producer's duplicate follows within its publish chunk. ws
re-sends what the replicas did not acknowledge (REDIS_WAIT_REPLICAS), up to a whole batch of one
chunk, after the originals: with fewer keys than a chunk, the copies of a busy symbol's first
trades were counted ``stale`` (as if out of order) instead of ``duplicate``."""


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


@dataclass(frozen=True, slots=True)
class TradeOutcome:
    """What one trade came to: the signal it fires (values for ``codec.build``) and/or why it
    was ignored. ``repeated``: a redelivered entry; ``signal`` is what it fired the first time
    (to be sent again, at least once), and nothing was applied."""

    signal: dict[str, Any] | None = None
    ignored: IgnoreReason | None = None
    repeated: bool = False


_APPLIED = TradeOutcome()
_TIME_FILLED = TradeOutcome(None, IgnoreReason.TIME_FILLED)
_DUPLICATE = TradeOutcome(None, IgnoreReason.DUPLICATE)
_STALE = TradeOutcome(None, IgnoreReason.STALE)


@dataclass
class _SymbolState:
    prices: deque[float]
    last_timestamp: int = -1
    same_ms: int = 0
    """Trades applied at ``last_timestamp`` so far (numbers the signal ids in that millisecond)."""
    cooldown_left: int = 0
    recent: OrderedDict[TradeKey, None] = field(default_factory=OrderedDict)
    """Keys of the symbol's last applied trades (bounded): the same trade again is a duplicate."""


@dataclass
class MomentumStrategy:
    """Fires BUY when the price rose ``threshold_bps`` over the last ``window`` trades, SELL when it fell.

    Every trade counts once (:meth:`decide`): trades sharing a millisecond all count; a
    redelivery is recognised by what identifies the delivery, never by business time.
    """

    params: SignalParams = field(default_factory=SignalParams)
    _state: dict[str, _SymbolState] = field(default_factory=dict)
    _entries: OrderedDict[tuple[str, str], dict[str, Any] | None] = field(default_factory=OrderedDict)
    ignored: Counter[IgnoreReason] = field(default_factory=Counter)
    """Trades ignored so far, by reason."""

    def on_trade(self, trade: TradeView, entry_id: str | None = None) -> dict[str, Any] | None:
        """The values of the signal this trade fires (for ``codec.build``), or ``None``."""
        outcome = self.decide(trade, entry_id)
        return None if outcome.repeated else outcome.signal

    def decide(
        self, trade: TradeView, entry_id: str | None = None, *, time_filled: bool = False
    ) -> TradeOutcome:
        """Apply ``trade`` (delivered as stream entry ``entry_id``) unless it was seen already.

        - ``entry_id`` already applied for this symbol (a symbol lives in one partition, so
          (symbol, entry id) names one delivery): ``duplicate``, with the signal it fired then;
        - the same trade again (same trade id, or same content in the same millisecond when
          there is no trade id; e.g. a producer's retry wrote it twice): ``duplicate``;
        - ``time_filled`` (the producer sent no time; the lenient profile filled one in): not
          business time, so it could neither be judged stale nor move the symbol's clock without
          changing what happens to the trades after it: refused as ``time_filled``;
        - strictly older than the symbol's last trade (out of order): refused as ``stale``;
        - otherwise applied, same millisecond as the last trade included.
        """
        symbol = trade.symbol
        state = self._state.get(symbol)
        if state is None:
            state = self._state[symbol] = _SymbolState(prices=deque(maxlen=self.params.window))
        entries = self._entries
        delivery = (symbol, entry_id) if entry_id is not None else None
        if delivery is not None and delivery in entries:
            self.ignored[IgnoreReason.DUPLICATE] += 1
            return TradeOutcome(entries[delivery], IgnoreReason.DUPLICATE, repeated=True)
        key = trade_key(trade)
        # The outcomes without a signal are the same immutable values every time (most trades).
        if time_filled:
            outcome = _TIME_FILLED
        elif key in state.recent:
            outcome = _DUPLICATE
        elif trade.timestamp < state.last_timestamp:
            outcome = _STALE
        else:
            signal = self._apply(state, trade, key)
            outcome = _APPLIED if signal is None else TradeOutcome(signal)
        if outcome.ignored is not None:
            self.ignored[outcome.ignored] += 1
        if delivery is not None:
            entries[delivery] = outcome.signal
            if len(entries) > _REMEMBERED_ENTRIES:
                entries.popitem(last=False)
        return outcome

    def _apply(self, state: _SymbolState, trade: TradeView, key: TradeKey) -> dict[str, Any] | None:
        if trade.timestamp == state.last_timestamp:
            state.same_ms += 1
        else:
            state.last_timestamp, state.same_ms = trade.timestamp, 0
        state.recent[key] = None
        if len(state.recent) > _REMEMBERED_TRADES:
            state.recent.popitem(last=False)
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
            "signal_id": signal_id(trade.symbol, trade.timestamp, state.same_ms),
            "symbol": trade.symbol,
            "side": "BUY" if move_bps > 0 else "SELL",
            "price": trade.price,
            "strength": strength,
            "reason": f"momentum {move_bps:+.1f}bps over {self.params.window} trades",
        }


def signal_id(symbol: str, timestamp: int, ordinal: int) -> str:
    """The id of a signal fired by the ``ordinal``-th trade (from 0) of ``symbol`` in millisecond
    ``timestamp``: ``sig-<symbol>-<timestamp>``, plus ``#<ordinal>`` after the first.

    Deterministic and the same on both paths (the legacy path has no trade id, and a stream
    entry id differs from run to run), so every mix gives the same ids; unique per trade.
    """
    base = f"sig-{symbol}-{timestamp}"
    return base if ordinal == 0 else f"{base}#{ordinal}"
