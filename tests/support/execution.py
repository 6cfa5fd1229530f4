"""Running execution's batches by hand, as the stream consumer does (core.redis.consumer)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from core.codec import Decoded
from services.execution.service import ExecutionService


async def execute_batch(
    svc: ExecutionService, batch: Sequence[tuple[Decoded, str]], *, mark: bool = True
) -> dict[str, BaseException]:
    """Handle each ``(decoded order, entry id)``, then the batch step with what the handlers
    returned, then (``mark``) the marks before the ack; returns the batch step's failures."""
    work = {entry_id: await svc.handle(decoded, entry_id) for decoded, entry_id in batch}
    failed = await svc.finish_batch(work, None)
    if mark:
        await svc.before_ack()
    return failed


@dataclass
class VenueOrder:
    """An order as the paper venue reads it (services.execution.paper.OrderView), either path's
    values: floats (v1.0) or decimals (v2.0)."""

    order_id: str
    symbol: str
    side: str
    order_type: str
    quantity: float | Decimal
    price: float | Decimal | None
