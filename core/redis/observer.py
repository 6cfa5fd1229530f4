"""Watching a topic on its Pub/Sub channel: lowest latency, no guarantees.

Pub/Sub versus the stream consumer (:mod:`core.redis.consumer`):

- Pub/Sub pushes each message to whoever is subscribed at that instant. No
  acknowledgement, no replay, no group: a subscriber that is slow, disconnected
  or restarting misses messages for good (and Redis drops a subscriber whose
  output buffer overflows).
- The stream keeps every message (up to its MAXLEN), a consumer group tracks
  what each service has handled, and unacknowledged entries are redelivered.

So services read the stream; Pub/Sub is for observers that want to see traffic
as it happens and accept gaps (dashboards, ``tail``-like tools). A message an
observer cannot decode is logged and counted, not dead-lettered: the stream
consumer dead-letters the durable copy.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Any

from core.codec import Codec, Decoded
from core.errors import ContractError
from core.logging import get_logger
from core.metrics import ServiceMetrics
from core.redis.modes import AsyncClient
from core.redis.retry import RETRYABLE
from core.topics import KeySpace, Topic

__all__ = ["PubSubObserver"]

_log = get_logger("core.redis.observer")


class PubSubObserver:
    """Decoded messages of one topic's channel as they are published (asyncio, lossy).

    Use as ``async with PubSubObserver(...) as obs: msg = await obs.get()`` or
    ``async for decoded in obs``. Connection errors are logged and ridden out
    (redis-py resubscribes on reconnect); messages sent meanwhile are lost.
    """

    def __init__(
        self,
        redis: AsyncClient,
        *,
        topic: Topic,
        codec: Codec,
        keys: KeySpace,
        metrics: ServiceMetrics | None = None,
    ) -> None:
        self.topic = topic
        self.codec = codec
        self.channel = keys.channel(topic)
        self.metrics = metrics
        self._pubsub: Any = redis.pubsub(ignore_subscribe_messages=True)

    async def __aenter__(self) -> PubSubObserver:
        await self.subscribe()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def subscribe(self) -> None:
        """Start receiving; messages published before this call are not seen."""
        await self._pubsub.subscribe(self.channel)

    async def close(self) -> None:
        """Unsubscribe and release the connection."""
        await self._pubsub.aclose()

    async def get(self, timeout_s: float = 1.0) -> Decoded | None:
        """The next decodable message, or ``None`` if none arrived within ``timeout_s``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return None
            try:
                msg = await self._pubsub.get_message(ignore_subscribe_messages=True, timeout=remaining)
            except RETRYABLE as exc:
                _log.warning(
                    "observer.redis_error", channel=self.channel, error=f"{type(exc).__name__}: {exc}"
                )
                await asyncio.sleep(min(0.1, max(remaining, 0)))
                continue
            if msg is None or msg.get("type") != "message":
                continue
            decoded = self._decode(msg["data"])
            if decoded is not None:
                return decoded

    async def __aiter__(self) -> AsyncIterator[Decoded]:
        """Every decodable message, forever."""
        while True:
            decoded = await self.get()
            if decoded is not None:
                yield decoded

    def _decode(self, data: bytes) -> Decoded | None:
        try:
            return self.codec.decode(self.topic, data)
        except ContractError as err:
            if self.metrics is not None:
                self.metrics.count_validation_errors(self.topic, self.codec.path, {err.reason: 1})
            _log.warning(
                "observer.invalid",
                channel=self.channel,
                reason=err.reason,
                errors=err.loggable_errors(),
                raw_preview=err.raw_preview,
            )
            return None
