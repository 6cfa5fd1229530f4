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
        batch is acknowledged (``run_consuming_service`` flushes the publisher)."""
        values = self.strategy.on_trade(decoded.message)
        if values is None:
            return
        signal = self.ctx.codec.build(Topic.SIGNALS, values)
        self.ctx.publisher.defer(Topic.SIGNALS, signal)
        self.ctx.count("signals")

    def replay(self, decoded: Decoded) -> None:
        """Apply a trade this partition's previous owner already handled: state only, nothing
        published (services.partitions rebuilds a moved partition this way; idempotent)."""
        self.strategy.on_trade(decoded.message)

    async def close(self) -> None:
        """Nothing to release."""
