"""Message types of the pipeline: the v1.0 contracts (legacy classes stay in ``legacy``)."""

from core.domain.contracts import (
    API_VERSION,
    Contract,
    MarketDataV1,
    OrderResultV1,
    OrderStatus,
    OrderType,
    OrderV1,
    Side,
    SignalV1,
)

__all__ = [
    "API_VERSION",
    "Contract",
    "MarketDataV1",
    "OrderResultV1",
    "OrderStatus",
    "OrderType",
    "OrderV1",
    "Side",
    "SignalV1",
]
