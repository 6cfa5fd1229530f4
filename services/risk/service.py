"""The risk service: signals in, approved orders out; rejections are counted and logged."""

from __future__ import annotations

from core.codec import Decoded
from core.logging import get_logger
from core.metrics import IgnoreReason
from core.topics import Topic
from services.risk.limits import RiskEngine, RiskLimits
from services.runtime import ServiceContext

__all__ = ["RiskService"]


class RiskService:
    """Applies the limits to each signal and publishes the orders it approves."""

    def __init__(self, ctx: ServiceContext, limits: RiskLimits | None = None) -> None:
        self.ctx = ctx
        # Exposure is a cross-symbol limit: with N partitions each gets limit/N (docs/scaling.md).
        self.engine = RiskEngine((limits or RiskLimits()).per_partition(ctx.settings.topic_partitions))
        self._log = get_logger(service=ctx.service.value)

    async def start(self) -> None:
        """Nothing to prepare."""

    async def handle(self, decoded: Decoded, entry_id: str) -> None:
        """Queue the order for an approved signal (published with the batch, before the batch is
        acknowledged); record a rejection otherwise."""
        signal = decoded.message
        decision = self.engine.on_signal(signal)
        if decision.duplicate:
            # Decided before (a redelivery, or the signal published twice): positions are not
            # moved again; an approved order is sent again (its first flush may have failed).
            self.ctx.ignore(Topic.SIGNALS, IgnoreReason.DUPLICATE, signal_id=signal.signal_id)
        if decision.order is None:
            if not decision.duplicate:
                self.ctx.count("rejections")
                self._log.info("risk.rejected", signal_id=signal.signal_id, reason=decision.rejection)
            return
        order = self.ctx.codec.build(Topic.ORDERS, decision.order)
        self.ctx.publisher.defer(Topic.ORDERS, order)
        if not decision.duplicate:
            self.ctx.count("orders")

    def replay(self, decoded: Decoded, entry_id: str) -> None:
        """Apply a signal this partition's previous owner already decided: positions and
        decisions only, nothing published (services.partitions; idempotent by signal_id)."""
        self.engine.on_signal(decoded.message)

    async def close(self) -> None:
        """Nothing to release."""
