"""Shared pieces of the transport tests: deterministic valid messages and codec set-ups."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from core.codec import Codec, CodecMode, Decoded, codec_for_mode, mode_available
from core.metrics import ServiceMetrics
from core.redis import StreamConsumer
from core.redis.modes import AsyncClient
from core.topics import KeySpace, ServiceName, Topic

__all__ = [
    "CODECS",
    "Collector",
    "consume_until",
    "make_messages",
    "orders_consumer",
    "poll_until",
    "valid_values",
]

BASE_MS = 1_767_225_600_000

_NAMES = {
    CodecMode.LEGACY: "legacy",
    CodecMode.LENIENT: "pydantic-lenient",
    CodecMode.STRICT: "pydantic-strict",
}

CODECS: dict[str, Codec] = {
    name: codec_for_mode(mode) for mode, name in _NAMES.items() if mode_available(mode)
}
"""Every path (and profile) a service can run on in this installation (strict alone once the
migration is deleted: docs/migration-runbook.md)."""


def valid_values(topic: Topic, i: int) -> dict[str, Any]:
    """The values of the ``i``-th valid message of ``topic``; distinct for every ``i``."""
    side = "BUY" if i % 2 == 0 else "SELL"
    ts = BASE_MS + i
    if topic is Topic.MARKET_DATA:
        return {
            "symbol": "BTC/USDT",
            "price": 50_000.5 + i / 100,
            "volume": 0.001 * (i % 97 + 1),
            "side": side,
            "venue": "mexc",
            "timestamp": ts,
            "trade_id": None if i % 3 else f"t{i}",
        }
    if topic is Topic.SIGNALS:
        return {
            "signal_id": f"sig-{i}",
            "symbol": "ETH/USDT",
            "side": side,
            "price": 3_000.25 + i,
            "strength": (i % 101) / 100,
            "reason": f"momentum +{i % 7}.{i % 10}% über 20 ✓",
            "timestamp": ts,
        }
    if topic is Topic.ORDERS:
        limit = i % 2 == 0
        return {
            "order_id": f"ord-{i}",
            "signal_id": f"sig-{i}",
            "symbol": "BTCUSDT",
            "side": side,
            "order_type": "LIMIT" if limit else "MARKET",
            "quantity": 0.5 + i % 5,
            "price": 49_999.0 + i if limit else None,
            "timestamp": ts,
        }
    filled = i % 4 != 3
    return {
        "order_id": f"ord-{i}",
        "symbol": "BTC/USDT",
        "side": side,
        "status": "FILLED" if filled else "REJECTED",
        "filled_quantity": 0.5 if filled else 0.0,
        "average_price": 50_001.5 + i if filled else None,
        "fee": 0.01 if filled else 0.0,
        "reason": None if filled else "risk limit",
        "simulated": i % 2 == 0,
        "timestamp": ts,
    }


def make_messages(codec: Codec, topic: Topic, n: int, *, start: int = 0) -> list[Any]:
    """``n`` distinct valid messages of ``topic`` as ``codec``'s path builds them."""
    return [codec.build(topic, valid_values(topic, i)) for i in range(start, start + n)]


class Collector:
    """A handler that records what it was given, in order."""

    def __init__(self) -> None:
        self.messages: list[Any] = []
        self.ids: list[str] = []

    async def __call__(self, decoded: Decoded, entry_id: str) -> None:
        self.messages.append(decoded.message)
        self.ids.append(entry_id)


async def poll_until(
    poll: Callable[[], Awaitable[object]], done: Callable[[], bool], *, timeout_s: float = 20.0
) -> None:
    """Call ``poll`` until ``done()``; fails the test if that takes longer than ``timeout_s``."""
    async with asyncio.timeout(timeout_s):
        while not done():
            await poll()


async def consume_until(
    redis: AsyncClient,
    keys: KeySpace,
    codec: Codec,
    done: Callable[[Collector], bool],
    *,
    instance: str,
    metrics: ServiceMetrics | None = None,
    block_ms: int = 200,
) -> Collector:
    """Read market data as the signal service's consumer ``instance`` until ``done(handled)``
    (:func:`poll_until`'s deadline); what the handler was given."""
    consumer = StreamConsumer(
        redis,
        topic=Topic.MARKET_DATA,
        service=ServiceName.SIGNAL,
        codec=codec,
        keys=keys,
        instance=instance,
        metrics=metrics,
        block_ms=block_ms,
    )
    await consumer.ensure_group()
    handled = Collector()
    await poll_until(lambda: consumer.poll_once(handled), lambda: done(handled))
    return handled


def orders_consumer(
    redis: AsyncClient, keys: KeySpace, instance: str = "c1", **options: Any
) -> StreamConsumer:
    """Execution's consumer of ``orders`` (strict Pydantic), batches of 100, 20-ms blocking reads
    unless ``options`` say otherwise: the transport tests' common subject."""
    options.setdefault("batch_size", 100)
    options.setdefault("block_ms", 20)
    return StreamConsumer(
        redis,
        topic=Topic.ORDERS,
        service=ServiceName.EXECUTION,
        codec=CODECS["pydantic-strict"],
        keys=keys,
        instance=instance,
        **options,
    )
