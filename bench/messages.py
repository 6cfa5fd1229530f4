"""Deterministic valid messages of every topic, for the benchmarks (distinct for every ``i``)."""

from __future__ import annotations

from typing import Any

from core.codec import Codec
from core.topics import Topic

__all__ = ["BASE_MS", "built", "values"]

BASE_MS = 1_767_225_600_000


def values(topic: Topic, i: int) -> dict[str, Any]:
    """Plain values of the ``i``-th message of ``topic`` (v1.0 fields included)."""
    side = "BUY" if i % 2 == 0 else "SELL"
    common = {"api_version": "v1.0", "timestamp": BASE_MS + i, "side": side}
    if topic is Topic.MARKET_DATA:
        return {
            **common,
            "symbol": "BTC/USDT",
            "price": 50_000.5 + i / 100,
            "volume": 0.001 * (i % 97 + 1),
            "venue": "mexc",
            "trade_id": f"t{i}" if i % 3 == 0 else None,
        }
    if topic is Topic.SIGNALS:
        return {
            **common,
            "signal_id": f"sig-BTC/USDT-{BASE_MS + i}",
            "symbol": "BTC/USDT",
            "price": 50_000.5 + i / 100,
            "strength": (i % 101) / 100,
            "reason": f"momentum +{i % 90}.5bps over 20 trades",
        }
    if topic is Topic.ORDERS:
        return {
            **common,
            "order_id": f"ord-sig-BTC/USDT-{BASE_MS + i}",
            "signal_id": f"sig-BTC/USDT-{BASE_MS + i}",
            "symbol": "BTC/USDT",
            "order_type": "MARKET",
            "quantity": 0.01 + (i % 7) / 1000,
            "price": 50_000.5 + i / 100,
        }
    filled = i % 4 != 3
    return {
        **common,
        "order_id": f"ord-sig-BTC/USDT-{BASE_MS + i}",
        "symbol": "BTC/USDT",
        "status": "FILLED" if filled else "REJECTED",
        "filled_quantity": 0.01 if filled else 0.0,
        "average_price": 50_025.5 if filled else None,
        "fee": 0.5 if filled else 0.0,
        "reason": None if filled else "notional below minimum 10",
        "simulated": True,
    }


def built(codec: Codec, topic: Topic, n: int) -> list[Any]:
    """``n`` messages of ``topic`` built by ``codec`` (its path's message objects)."""
    return [codec.build(topic, values(topic, i)) for i in range(n)]
