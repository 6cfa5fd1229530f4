"""What tells one trade of a symbol from another: the one rule the signal strategy dedupes by
(:mod:`services.signal.strategy`) and the dead-letter replay check predicts it with
(:mod:`core.redis.dlq_impact`)."""

from __future__ import annotations

from typing import Any, Protocol

__all__ = ["TradeKey", "TradeView", "trade_key"]


class TradeView(Protocol):
    """What the strategy reads of a market-data message (both paths provide it).

    ``trade_id``, ``volume``, ``side`` and ``venue`` are read with ``getattr`` when present:
    they only tell trades apart (see :func:`trade_key`).
    """

    symbol: str
    price: float
    timestamp: int


TradeKey = tuple[Any, ...]
"""What identifies one trade of a symbol: the exchange's trade id, or its content."""


def trade_key(trade: TradeView) -> TradeKey:
    """The exchange's trade id when the message carries one (Pydantic path), else the trade's
    content (time, price, volume, side, venue): the legacy path has no trade id."""
    trade_id = getattr(trade, "trade_id", None)
    if trade_id is not None:
        return ("id", trade_id)
    return (
        "fp",
        trade.timestamp,
        trade.price,
        getattr(trade, "volume", None),
        str(getattr(trade, "side", "")),
        getattr(trade, "venue", None),
    )
