"""The signal service: market data in, momentum signals out."""

from __future__ import annotations

from core.codec import Decoded
from core.topics import Topic
from services.runtime import ServiceContext
from services.signal.strategy import MomentumStrategy, SignalParams

__all__ = ["SignalService"]


class SignalService:
    """Feeds each trade to the strategy and publishes the signals it fires."""

    def __init__(self, ctx: ServiceContext, params: SignalParams | None = None) -> None:
        self.ctx = ctx
        self.strategy = MomentumStrategy(params or SignalParams())

    async def start(self) -> None:
        """Nothing to prepare."""

    async def handle(self, decoded: Decoded, entry_id: str) -> None:
        """Queue a signal when this trade fires one; it is published with the batch, before the
        batch is acknowledged (``run_consuming_service`` flushes the publisher).

        A trade the strategy ignores (stale, duplicate, time filled in by the lenient profile)
        is counted and logged by reason; a redelivered entry sends the signal it fired the
        first time again (its first flush may have failed), without applying the trade twice.
        """
        trade = decoded.message
        outcome = self.strategy.decide(trade, entry_id, time_filled="timestamp" in decoded.defaulted)
        if outcome.ignored is not None:
            self.ctx.ignore(Topic.MARKET_DATA, outcome.ignored, symbol=trade.symbol, stream_id=entry_id)
        if outcome.signal is None:
            return
        signal = self.ctx.codec.build(Topic.SIGNALS, outcome.signal)
        self.ctx.publisher.defer(Topic.SIGNALS, signal)
        if not outcome.repeated:
            self.ctx.count("signals")

    def replay(self, decoded: Decoded, entry_id: str) -> None:
        """Apply a trade this partition's previous owner already handled: state only, nothing
        published or counted (services.partitions rebuilds a moved partition this way; the
        same dedupe as :meth:`handle`, so the rebuilt state is the one the owner had)."""
        self.strategy.decide(decoded.message, entry_id, time_filled="timestamp" in decoded.defaulted)

    async def close(self) -> None:
        """Nothing to release."""
