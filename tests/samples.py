"""One valid v1.0 message per topic, shared by the tests that mutate or export them."""

from __future__ import annotations

from typing import Any

from core.topics import Topic

__all__ = ["SAMPLE_TS", "VALID_MESSAGES", "valid_message"]

SAMPLE_TS = 1_767_225_600_000  # 2026-01-01T00:00:00Z

VALID_MESSAGES: dict[Topic, dict[str, Any]] = {
    Topic.MARKET_DATA: {
        "api_version": "v1.0",
        "symbol": "BTC/USDT",
        "price": 87_250.5,
        "volume": 0.0125,
        "side": "BUY",
        "venue": "mexc",
        "timestamp": SAMPLE_TS,
    },
    Topic.SIGNALS: {
        "api_version": "v1.0",
        "signal_id": "sig-1",
        "symbol": "BTC/USDT",
        "side": "BUY",
        "price": 87_250.5,
        "strength": 0.42,
        "reason": "momentum",
        "timestamp": SAMPLE_TS,
    },
    Topic.ORDERS: {
        "api_version": "v1.0",
        "order_id": "ord-1",
        "signal_id": "sig-1",
        "symbol": "BTC/USDT",
        "side": "SELL",
        "order_type": "LIMIT",
        "quantity": 0.01,
        "price": 87_000.0,
        "timestamp": SAMPLE_TS,
    },
    Topic.ORDER_RESULTS: {
        "api_version": "v1.0",
        "order_id": "ord-1",
        "symbol": "BTC/USDT",
        "side": "SELL",
        "status": "FILLED",
        "filled_quantity": 0.01,
        "average_price": 87_001.5,
        "fee": 0.87,
        "reason": None,
        "simulated": True,
        "timestamp": SAMPLE_TS,
    },
}
"""A valid full message of every topic (JSON values; every field present)."""


def valid_message(topic: Topic, **changes: Any) -> dict[str, Any]:
    """A fresh copy of the valid ``topic`` message with ``changes`` applied."""
    return {**VALID_MESSAGES[topic], **changes}
