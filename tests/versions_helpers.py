"""Shared values of the contract-version tests."""

from __future__ import annotations

from typing import Any

from core.codec import build_codec
from core.domain.contracts import MarketDataV1, OrderV1
from core.topics import CodecPath, Profile
from core.versions.models import OrderResultV1_1

TS = 1_700_000_000_000
STRICT = build_codec(CodecPath.PYDANTIC, Profile.STRICT)


def trade(**changes: Any) -> MarketDataV1:
    values: dict[str, Any] = {
        "symbol": "BTC/USDT",
        "price": 64250.5,
        "volume": 0.0123,
        "side": "BUY",
        "venue": "mexc",
        "timestamp": TS,
    }
    return MarketDataV1(**{**values, **changes})


def order(**changes: Any) -> OrderV1:
    values: dict[str, Any] = {
        "order_id": "ord-1",
        "signal_id": "sig-1",
        "symbol": "BTC/USDT",
        "side": "BUY",
        "order_type": "LIMIT",
        "quantity": 0.5,
        "price": 64000.25,
        "timestamp": TS,
    }
    return OrderV1(**{**values, **changes})


def result_v11(**changes: Any) -> OrderResultV1_1:
    values: dict[str, Any] = {
        "order_id": "ord-1",
        "symbol": "BTC/USDT",
        "side": "BUY",
        "status": "FILLED",
        "ordered_quantity": 0.5,
        "filled_quantity": 0.5,
        "average_price": 64000.25,
        "fee": 0.032,
        "simulated": True,
        "timestamp": TS,
    }
    return OrderResultV1_1(**{**values, **changes})
