"""The ws service: trades from a source (replay or live MEXC) to ``market_data``.

Trades are published in batches (one round trip per batch). A trade the codec
refuses, or an exchange frame that cannot be decoded, goes to the dead-letter
stream with its raw bytes; it never stops the service. While Redis is down such a
letter is given up after :data:`LETTER_RETRY` (counted ``dead_letters_lost_redis_down``
and logged with its reason), so it holds the source's loop a fraction of a second.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Sequence

from core.errors import ContractError, NotReplicatedError, TransportError
from core.logging import get_logger
from core.redis.dead_letters import DeadLetterCause
from core.redis.retry import RetryPolicy
from core.topics import Topic
from core.versions.own import own_version
from services.runtime import ServiceContext
from services.ws.trades import Trade

__all__ = ["LETTER_RETRY", "WsService"]

LETTER_RETRY = RetryPolicy(attempts=2, initial_s=0.05, max_s=0.1, jitter_s=0.05, deadline_s=0.5)
"""How hard ws tries to write one dead letter: twice, about 0.1 s apart. The write runs inside
the source's loop (the live receive loop too), which must not wait out a Redis outage for it:
the transport's default policy would hold the feed ~10 s per bad frame (pings missed, trades
piling up). Good trades ride out outages in :class:`~services.ws.outbox.Outbox`, not here."""

Progress = Callable[[str, int, int], None]
"""Called with (phase, done, total) while trades are published (the pipeline's progress too)."""


class WsService:
    """Builds ``market_data`` messages from trades and publishes them in batches."""

    def __init__(self, ctx: ServiceContext, *, batch_size: int = 500) -> None:
        self.ctx = ctx
        self.batch_size = batch_size
        self._pending: list[object] = []
        self._log = get_logger(service=ctx.service.value)
        # The version the codec builds market_data in (the one it writes, core.versions.own):
        # v2.0 carries the venue's decimal strings exact, v1.0 their floats.
        self._version = own_version(ctx.codec, Topic.MARKET_DATA)

    async def build(self, trade: Trade) -> object | None:
        """The ``market_data`` message of ``trade``; ``None`` when the codec refuses it (then
        it was dead-lettered, or counted as lost if Redis is down too)."""
        message = self.build_or_refusal(trade)
        if isinstance(message, ContractError):
            await self._park(message)
            return None
        return message

    def build_or_refusal(self, trade: Trade) -> object:
        """The ``market_data`` message of ``trade``, or the codec's :class:`ContractError` (not
        raised, not yet dead-lettered: the caller parks it, see :meth:`build`). Synchronous: a
        valid trade, every trade but a few, costs no coroutine of its own."""
        try:
            return self.ctx.codec.build(Topic.MARKET_DATA, trade.as_values(self._version))
        except ContractError as exc:
            return exc

    async def on_trade(self, trade: Trade) -> None:
        """Queue one trade; publishes when a batch is full (a direct, unbuffered feed: the
        service process puts :class:`~services.ws.outbox.Outbox` in between)."""
        message = self.build_or_refusal(trade)
        if isinstance(message, ContractError):
            await self._park(message)
            return
        self._pending.append(message)
        if len(self._pending) >= self.batch_size:
            await self.flush()

    async def flush(self) -> None:
        """Publish what is queued; with REDIS_WAIT_REPLICAS, until the replicas acknowledged it."""
        if self._pending:
            batch, self._pending = self._pending, []
            await self.publish_batch(batch)

    async def publish_batch(self, batch: list[object]) -> None:
        """Publish built messages now (``TransportError`` if Redis stays unreachable)."""
        await self._publish_acknowledged(batch)
        self.ctx.count("trades_published", len(batch))

    async def _publish_acknowledged(self, batch: list[object]) -> None:
        # A trade comes from the exchange once: if the replicas did not confirm it, a primary
        # fail-over could lose it, so re-send exactly those (a duplicate is harmless: signal
        # counts a trade it applied already as a duplicate). They are, per partition, the chunk
        # that fell short and all after it, so each symbol's order holds (docs/scaling.md).
        # Give up after the retry policy's deadline with the NotReplicatedError.
        policy = self.ctx.publisher.retry
        deadline = time.monotonic() + policy.deadline_s
        pause = policy.initial_s
        while True:
            try:
                await self.ctx.publisher.publish_many(Topic.MARKET_DATA, batch)
                return
            except NotReplicatedError as exc:
                if time.monotonic() >= deadline:
                    raise
                batch = [batch[i] for i in exc.unacknowledged]
                self.ctx.count("trades_resent", len(batch))
                self._log.warning("ws.resend_unreplicated", trades=len(batch), error=str(exc))
                await asyncio.sleep(pause)
                pause = min(pause * 2, policy.max_s)

    async def on_bad_frame(self, raw: bytes, reason: str) -> None:
        """Park an exchange frame that could not be decoded (the live client's callback)."""
        error = ContractError(
            topic=Topic.MARKET_DATA.value,
            path=self.ctx.codec.path.value,
            profile=self.ctx.codec.profile.value if self.ctx.codec.profile else None,
            raw=raw,
            errors=[{"type": "frame_invalid", "loc": (), "msg": reason}],
        )
        await self._park(error)

    async def publish_trades(self, trades: Sequence[Trade], *, progress: Progress | None = None) -> int:
        """Publish ``trades`` at full speed; returns how many were published."""
        before = self.ctx.extra_counts.get("trades_published", 0)
        for start in range(0, len(trades), self.batch_size):
            for trade in trades[start : start + self.batch_size]:
                await self.on_trade(trade)
            await self.flush()
            if progress:
                progress("publishing", min(start + self.batch_size, len(trades)), len(trades))
        return self.ctx.extra_counts.get("trades_published", 0) - before

    async def _park(self, error: ContractError) -> None:
        self.ctx.count("bad_frames")
        self._log.warning("ws.dead_letter", reason=error.reason, errors=error.loggable_errors())
        try:
            await self._write_letter(error)
        except TransportError as exc:
            # Redis is down: a bad frame must not stop the live feed. It is logged above
            # (reason, errors) and counted here, since its dead letter cannot be written.
            self.ctx.count("dead_letters_lost_redis_down")
            self._log.error("ws.dead_letter_lost", reason=error.reason, error=str(exc))

    async def _write_letter(self, error: ContractError) -> None:
        await self.ctx.dead_letters.park(
            Topic.MARKET_DATA,
            error.raw or json.dumps({"error": str(error)}).encode(),
            error,
            service=self.ctx.service,
            path=self.ctx.codec.path,
            profile=self.ctx.codec.profile,
            retry=LETTER_RETRY,
        )
        # Counted once written, like a consumer's dead letter: status and /metrics show it.
        path = self.ctx.codec.path
        self.ctx.metrics.count_validation_errors(Topic.MARKET_DATA, path, {error.reason: 1})
        self.ctx.metrics.count_dead_letters(Topic.MARKET_DATA, path, DeadLetterCause.INVALID)
