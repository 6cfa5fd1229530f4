"""A bounded buffer between a trade source and Redis, so ws rides out Redis outages.

The source hands trades to :meth:`Outbox.put`; one sender task (:meth:`Outbox.run`)
publishes what is queued in batches. When Redis is down the publisher's own retries
(:class:`~core.redis.retry.RetryPolicy`, tenacity) give up after a few seconds with
:class:`~core.errors.TransportError`; the sender then keeps the batch, backs off
(doubling up to ``max_pause_s``, 1 s: a live feed sheds while it waits) and tries again, for
as long as it takes. Meanwhile the buffer fills, and what happens when it is full
depends on the source:

* :attr:`Overflow.WAIT` (replay): :meth:`put` waits for room. A file can pause, so
  nothing is lost: after the outage every trade arrives once, in order.
* :attr:`Overflow.SHED_OLDEST` (live MEXC feed): a live source cannot pause (the
  exchange would drop the connection), so the oldest queued trade is dropped for the
  new one and counted as shed with reason ``buffer_full``. The freshest trades survive
  an outage; the gap is exactly the shed count.

Trades still queued when the service stops while Redis is unreachable are counted as
shed with reason ``shutdown``. Counts: live status (``shed_buffer_full``,
``shed_shutdown``, ``ws_buffered``, ``ws_redis_down``) and Prometheus
(``cdb_ws_shed_total{reason}``, ``cdb_ws_buffered``).

Each partition's part of a batch is one publish call of at most one chunk (one round
trip), retried on its own, so a batch that reached Redis for some partitions is not
sent again to those. A chunk whose reply was lost with the connection after Redis had
applied it is sent again (the publisher's at-least-once contract); consumers dedupe.

A resumable source hands each trade with a *mark* (its position, e.g. "trade 1234 of
the file"); after a batch is confirmed the outbox awaits ``on_confirmed`` with the last
mark of that batch (:mod:`services.ws.position` stores it), and a trade the codec
refused still moves the mark on once the trades before it are confirmed.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from enum import StrEnum
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge

from core.errors import TransportError
from core.logging import get_logger
from core.redis.sync_publish import message_partition
from core.topics import Topic
from services.ws.service import WsService
from services.ws.trades import Trade

__all__ = ["SHED_BUFFER_FULL", "SHED_SHUTDOWN", "Outbox", "Overflow", "first_done"]

SHED_BUFFER_FULL = "buffer_full"
"""Shed reason: a live trade arrived with the buffer full (Redis down for a long time)."""
SHED_SHUTDOWN = "shutdown"
"""Shed reason: the service stopped while Redis was unreachable and trades were queued."""


_REFUSED = object()
"""Queue placeholder of a trade the codec refused (dead-lettered): carries only its mark."""


class Overflow(StrEnum):
    """What :meth:`Outbox.put` does when the buffer is full."""

    WAIT = "wait"
    SHED_OLDEST = "shed_oldest"


class Outbox:
    """Queues ``ws``'s messages (at most ``capacity``) and publishes them in batches of at most
    ``batch_size``, retrying through Redis outages of any length."""

    def __init__(
        self,
        ws: WsService,
        *,
        capacity: int,
        overflow: Overflow,
        batch_size: int = 500,
        max_pause_s: float = 1.0,
        on_confirmed: Callable[[object], Awaitable[object]] | None = None,
    ) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.ws = ws
        self.capacity = capacity
        self.overflow = overflow
        self.batch_size = max(1, min(batch_size, ws.ctx.publisher.chunk))
        self.max_pause_s = max_pause_s
        self.on_confirmed = on_confirmed
        self.shed: dict[str, int] = {SHED_BUFFER_FULL: 0, SHED_SHUTDOWN: 0}
        self._queue: deque[object] = deque()
        self._marks: deque[object] = deque()  # parallel to _queue: each message's mark (or None)
        self._inflight = 0
        self._items = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self._idle = asyncio.Event()
        self._idle.set()
        self._log = get_logger(service=ws.ctx.service.value)
        self._metrics = _metrics(ws)
        self._buffered_gauge = self._metrics[1].labels(ws.ctx.service.value)  # set on every put

    @property
    def buffered(self) -> int:
        """Messages queued or being sent."""
        return len(self._queue) + self._inflight

    async def put(self, trade: Trade, mark: object = None) -> None:
        """Queue one trade (the source's callback) with its source position ``mark``. A trade
        the codec refuses is dead-lettered at once. With :attr:`Overflow.WAIT` this waits
        while the buffer is full."""
        message = await self.ws.build(trade)
        if message is None:
            if mark is None:
                return
            message = _REFUSED  # keeps its place, so the mark moves past it once confirmed
        if len(self._queue) >= self.capacity:
            if self.overflow is Overflow.WAIT:
                while len(self._queue) >= self.capacity:
                    self._room.clear()
                    await self._room.wait()
            else:
                self._queue.popleft()
                self._marks.popleft()
                self._count_shed(SHED_BUFFER_FULL, 1)
        self._queue.append(message)
        self._marks.append(mark)
        self._idle.clear()
        self._items.set()
        self._gauge()

    async def drain(self) -> None:
        """Wait until everything queued so far was published (or shed)."""
        await self._idle.wait()

    async def run(self, stop: asyncio.Event) -> None:
        """Publish queued messages until ``stop`` is set and the queue is empty; while stopping,
        whatever Redis does not take any more is counted as shed (``shutdown``)."""
        while True:
            if not self._queue:
                self._idle.set()
                if stop.is_set():
                    return
                self._items.clear()
                await first_done(self._items.wait(), stop.wait())
                continue
            size = min(self.batch_size, len(self._queue))
            batch = [self._queue.popleft() for _ in range(size)]
            marks = [self._marks.popleft() for _ in range(size)]
            self._inflight = len(batch)
            self._room.set()
            try:
                sent = await self._send([m for m in batch if m is not _REFUSED], stop)
            finally:
                self._inflight = 0
                self._gauge()
            last = next((m for m in reversed(marks) if m is not None), None)
            if sent and last is not None and self.on_confirmed is not None:
                await self.on_confirmed(last)

    async def _send(self, batch: list[object], stop: asyncio.Event) -> bool:
        """Publish ``batch``; True once Redis confirmed all of it, False when it was shed."""
        keys = self.ws.ctx.keys
        pending: dict[int, list[object]] = {}
        for message in batch:
            pending.setdefault(message_partition(keys, Topic.MARKET_DATA, message), []).append(message)
        pause = 0.0
        while True:
            parts = list(pending.items())
            outcomes = await asyncio.gather(
                *(self.ws.publish_batch(msgs) for _, msgs in parts), return_exceptions=True
            )
            for (partition, _), outcome in zip(parts, outcomes, strict=True):
                if outcome is None:
                    del pending[partition]
                elif not isinstance(outcome, TransportError):
                    raise outcome  # a bug, not an outage: let it surface
            self._down(bool(pending))
            if not pending:
                return True
            left = sum(len(m) for m in pending.values())
            if stop.is_set():
                self._count_shed(SHED_SHUTDOWN, left + len(self._queue))
                self._queue.clear()
                self._marks.clear()
                self._room.set()
                return False
            pause = min(max(pause * 2, 0.1), self.max_pause_s)
            self.ws.ctx.metrics.count_retry("ws_outbox")
            self._log.error(
                "ws.redis_down", unsent=left, buffered=len(self._queue), pause_s=pause, error=str(outcomes[0])
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=pause)

    def _count_shed(self, reason: str, n: int) -> None:
        if n <= 0:
            return
        self.shed[reason] += n
        self.ws.ctx.count(f"shed_{reason}", n)
        self._metrics[0].labels(self.ws.ctx.service.value, reason).inc(n)
        if reason == SHED_SHUTDOWN or self.shed[reason] == n or self.shed[reason] % 1000 < n:
            # the first shed of a kind and every thousandth after, not one log line per trade
            self._log.warning("ws.shed", reason=reason, count=n, total=self.shed[reason])

    def _down(self, down: bool) -> None:
        self.ws.ctx.extra_counts["ws_redis_down"] = int(down)

    def _gauge(self) -> None:
        self.ws.ctx.extra_counts["ws_buffered"] = self.buffered
        self._buffered_gauge.set(self.buffered)


async def first_done(*waits: Coroutine[Any, Any, object]) -> None:
    """Await until the first of ``waits`` finishes; cancel the others."""
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()


_REGISTERED: weakref.WeakKeyDictionary[CollectorRegistry, tuple[Counter, Gauge]] = weakref.WeakKeyDictionary()


def _metrics(ws: WsService) -> tuple[Counter, Gauge]:
    # The outbox's series live in the service's own registry (served on /metrics with the
    # transport's); one pair per registry, however many outboxes a test builds on it.
    registry = ws.ctx.metrics.registry
    pair = _REGISTERED.get(registry)
    if pair is None:
        shed = Counter(
            "ws_shed",
            "Trades ws dropped on purpose, by reason (buffer_full: live source, Redis down long; "
            "shutdown: stopped while Redis was down).",
            ["service", "reason"],
            namespace="cdb",
            registry=registry,
        )
        buffered = Gauge(
            "ws_buffered",
            "Trades ws holds, waiting for Redis.",
            ["service"],
            namespace="cdb",
            registry=registry,
        )
        pair = _REGISTERED[registry] = (shed, buffered)
    return pair
