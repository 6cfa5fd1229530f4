"""The legacy message classes, kept exactly as the pre-migration services had them.

Faithful to the old behaviour: ``from_dict`` does no validation, a missing key
raises ``KeyError``, unknown keys are ignored, numbers go through ``float()``.
They are the "before" side of the migration. Only the codec registry imports
them, so deleting this module after cutover is one registry entry.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Self

__all__ = ["LegacyMessage", "MarketData", "Order", "OrderResult", "Signal"]


@dataclass(slots=True)
class MarketData:
    """A trade as the old ws service published it (timestamp in ms)."""

    symbol: str
    price: float
    volume: float
    side: str
    venue: str
    timestamp: int

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        """Build from a decoded JSON object; ``KeyError`` if a key is missing."""
        return cls(
            symbol=data["symbol"],
            price=float(data["price"]),
            volume=float(data["volume"]),
            side=data["side"],
            venue=data["venue"],
            timestamp=int(data["timestamp"]),
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON object the old ws service sent."""
        return asdict(self)


@dataclass(slots=True)
class Signal:
    """A signal as the old signal service published it (no timestamp)."""

    signal_id: str
    symbol: str
    side: str
    price: float
    strength: float
    reason: str

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        """Build from a decoded JSON object; ``KeyError`` if a key is missing."""
        return cls(
            signal_id=data["signal_id"],
            symbol=data["symbol"],
            side=data["side"],
            price=float(data["price"]),
            strength=float(data["strength"]),
            reason=data["reason"],
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON object the old signal service sent."""
        return asdict(self)


@dataclass(slots=True)
class Order:
    """An order as the old risk service published it (no timestamp)."""

    order_id: str
    signal_id: str
    symbol: str
    side: str
    order_type: str
    quantity: float
    price: float | None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        """Build from a decoded JSON object; ``KeyError`` if a key is missing."""
        price = data["price"]
        return cls(
            order_id=data["order_id"],
            signal_id=data["signal_id"],
            symbol=data["symbol"],
            side=data["side"],
            order_type=data["order_type"],
            quantity=float(data["quantity"]),
            price=None if price is None else float(price),
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON object the old risk service sent."""
        return asdict(self)


@dataclass(slots=True)
class OrderResult:
    """An order result as the old execution service published it (no timestamp)."""

    order_id: str
    symbol: str
    side: str
    status: str
    filled_quantity: float
    average_price: float | None
    fee: float
    reason: str | None
    simulated: bool

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        """Build from a decoded JSON object; ``KeyError`` if a key is missing."""
        average = data["average_price"]
        return cls(
            order_id=data["order_id"],
            symbol=data["symbol"],
            side=data["side"],
            status=data["status"],
            filled_quantity=float(data["filled_quantity"]),
            average_price=None if average is None else float(average),
            fee=float(data["fee"]),
            reason=data["reason"],
            simulated=data["simulated"],
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON object the old execution service sent."""
        return asdict(self)


LegacyMessage = MarketData | Signal | Order | OrderResult
"""Any legacy message."""
