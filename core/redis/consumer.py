"""Reading a topic stream with a consumer group: at-least-once, nothing dropped silently.

Every service instance is one consumer in its service's group
(:meth:`KeySpace.group`). An entry is acknowledged (``XACK``) only after the
handler finished with it, so a consumer that dies mid-batch leaves its entries
pending; another consumer (or the same one, later) takes them over with
``XAUTOCLAIM`` once they have been idle ``reclaim_idle_ms``, and a restarted
consumer with the same name first re-reads its own pending entries. Therefore
**a handler may see an entry more than once** and must be idempotent (dedupe on
the message's deterministic id).

Bad input never stops the loop: an entry that does not decode (including an
oversized one, refused by the codec before parsing) is written to the
dead-letter stream with its errors and acknowledged; an entry whose handler
raises stays pending and is retried on reclaim until it has been delivered
``max_deliveries`` times, then it is dead-lettered with the exception and
acknowledged. Connection errors are retried with backoff; the group position
lives in Redis, so a consumer resumes exactly where the group was.

Contrast with Pub/Sub (:mod:`core.redis.observer`): lower latency, no group, no
replay, and anything published while a subscriber is away is lost. Fine for
observers (dashboards, tail), never for a service.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import redis.asyncio as aioredis

from core.codec import Codec, Decoded
from core.codec.fields import field_map_bytes
from core.errors import ContractError, TransportError
from core.logging import get_logger
from core.metrics import Outcome, ServiceMetrics
from core.redis.consumer_io import Entry, GroupIO
from core.redis.dead_letters import DeadLetterCause, DeadLetters, letter_fields
from core.redis.retry import RetryPolicy
from core.settings import ServiceSettings
from core.topics import KeySpace, ServiceName, Topic

__all__ = ["Handler", "StreamConsumer"]

Handler = Callable[[Decoded, str], Awaitable[None]]
"""Handles one decoded message; gets the stream entry id. Raising leaves the entry pending."""

_log = get_logger("core.redis.consumer")
_MAX_REMEMBERED_FAILURES = 10_000
_BACKLOG_EVERY_S = 1.0


class StreamConsumer:
    """One consumer of ``topic``'s stream in ``service``'s group (asyncio).

    ``instance`` names the consumer within the group; keep it stable across
    restarts of the same instance so its own pending entries are picked up at once.
    ``group_start``: where a newly created group starts (``"0"``: every entry the
    stream still holds; ``"$"``: only entries added from now on).
    """

    def __init__(
        self,
        redis: aioredis.Redis,
        *,
        topic: Topic,
        service: ServiceName,
        codec: Codec,
        keys: KeySpace,
        instance: str,
        batch_size: int = 500,
        block_ms: int = 200,
        reclaim_idle_ms: int = 30_000,
        max_deliveries: int = 5,
        metrics: ServiceMetrics | None = None,
        dead_letters: DeadLetters | None = None,
        retry: RetryPolicy | None = None,
        group_start: str = "0",
    ) -> None:
        self.topic = topic
        self.service = service
        self.codec = codec
        self.instance = instance
        self.batch_size = max(1, batch_size)
        self.block_ms = block_ms
        self.reclaim_idle_ms = reclaim_idle_ms
        self.max_deliveries = max(1, max_deliveries)
        self.metrics = metrics if metrics is not None else ServiceMetrics(service)
        policy = retry if retry is not None else RetryPolicy()
        self.dead_letters = (
            dead_letters if dead_letters is not None else DeadLetters(redis, keys, retry=policy)
        )
        self.io = GroupIO(
            redis,
            stream=keys.stream(topic),
            group=keys.group(service),
            consumer=instance,
            retry=policy,
            group_start=group_start,
            on_retry=self._on_retry,
        )
        self._path = codec.path.value
        self._profile = codec.profile.value if codec.profile else None
        self._failures: dict[str, BaseException] = {}
        self._recover_own = True
        self._next_reclaim = 0.0

    @classmethod
    def from_settings(
        cls,
        redis: aioredis.Redis,
        settings: ServiceSettings,
        *,
        topic: Topic,
        service: ServiceName,
        codec: Codec,
        metrics: ServiceMetrics | None = None,
        dead_letters: DeadLetters | None = None,
    ) -> StreamConsumer:
        """A consumer tuned by ``settings`` (CONSUMER_BATCH, CONSUMER_BLOCK_MS, ...)."""
        return cls(
            redis,
            topic=topic,
            service=service,
            codec=codec,
            keys=KeySpace(settings.key_prefix),
            instance=settings.instance,
            batch_size=settings.consumer_batch,
            block_ms=settings.consumer_block_ms,
            reclaim_idle_ms=settings.reclaim_idle_ms,
            max_deliveries=settings.max_deliveries,
            metrics=metrics,
            dead_letters=dead_letters,
        )

    async def ensure_group(self) -> None:
        """Create the group (and the stream) if missing; idempotent (``XGROUP CREATE ... MKSTREAM``)."""
        await self.io.ensure_group()

    async def poll_once(self, handler: Handler) -> int:
        """Handle one round: own pending entries after a (re)start, due reclaims, one new batch.

        Returns how many entries were handled, dead-lettered included.
        Raises :class:`~core.errors.TransportError` when Redis stays unreachable.
        """
        if self._recover_own:
            entries = await self.io.read_own_pending(self.batch_size)
            if len(entries) < self.batch_size:
                self._recover_own = False
            if entries:
                return await self._process(entries, handler, await self._deliveries(entries))
        handled = 0
        now = time.monotonic()
        if now >= self._next_reclaim:
            claimed, more = await self.io.reclaim(self.reclaim_idle_ms, self.batch_size)
            if not more:
                self._next_reclaim = now + max(self.reclaim_idle_ms / 2000, 0.01)
            if claimed:
                handled += await self._process(claimed, handler, await self._deliveries(claimed))
        block = self.block_ms if handled == 0 and self.block_ms > 0 else None
        entries = await self.io.read_new(self.batch_size, block)
        if entries:
            handled += await self._process(entries, handler, None)
        return handled

    async def run(self, handler: Handler, stop: asyncio.Event) -> None:
        """Poll until ``stop`` is set; rides out Redis outages (logs, backs off, resumes)."""
        next_backlog = 0.0
        pause = 0.0
        while not stop.is_set():
            try:
                await self.poll_once(handler)
                if time.monotonic() >= next_backlog:
                    await self.lag()
                    next_backlog = time.monotonic() + _BACKLOG_EVERY_S
                pause = 0.0
            except TransportError as exc:
                pause = min(max(pause * 2, 0.1), 5.0)
                self._recover_own = True
                _log.error(
                    "consumer.redis_down",
                    service=self.service.value,
                    topic=self.topic.value,
                    error=str(exc),
                    pause_s=pause,
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=pause)

    async def lag(self) -> int:
        """Entries of the stream not yet delivered to the group, plus those pending (unacked)."""
        undelivered, pending = await self.io.backlog()
        self.metrics.set_backlog(self.topic, lag=undelivered, pending=pending)
        return undelivered + pending

    async def _deliveries(self, entries: Sequence[Entry]) -> dict[bytes, int]:
        return await self.io.delivery_counts([e[0] for e in entries], extra=len(self._failures))

    async def _process(
        self, entries: Sequence[Entry], handler: Handler, deliveries: Mapping[bytes, int] | None
    ) -> int:
        decode, topic = self.codec.from_fields, self.topic
        done: list[bytes] = []
        letters: list[dict[str, Any]] = []
        outcomes: Counter[Outcome] = Counter()
        reasons: Counter[str] = Counter()
        defaults: Counter[str] = Counter()
        for raw_id, fields in entries:
            count = deliveries.get(raw_id, 2) if deliveries is not None else 1
            if not fields:  # trimmed or deleted while pending: nothing left to handle
                _log.warning("consumer.entry_gone", topic=topic.value, stream_id=raw_id.decode())
                done.append(raw_id)
                continue
            entry_id = raw_id.decode("ascii")
            if count > self.max_deliveries:
                letters.append(self._gave_up(entry_id, fields, count))
                done.append(raw_id)
                outcomes[Outcome.DEAD_LETTERED] += 1
                continue
            try:
                decoded = decode(topic, fields)
            except ContractError as err:
                letters.append(self._invalid(entry_id, err, count))
                reasons[err.reason] += 1
                done.append(raw_id)
                outcomes[Outcome.INVALID] += 1
                continue
            except Exception as exc:  # a codec bug must not stop the service either
                letters.append(self._decoder_crash(entry_id, fields, exc, count))
                reasons["decoder_crash"] += 1
                done.append(raw_id)
                outcomes[Outcome.INVALID] += 1
                continue
            try:
                await handler(decoded, entry_id)
            except Exception as exc:
                outcomes[self._handler_failed(entry_id, fields, exc, count, letters)] += 1
                if count >= self.max_deliveries:
                    done.append(raw_id)
                continue
            done.append(raw_id)
            outcomes[Outcome.OK] += 1
            for name in decoded.defaulted:
                defaults[name] += 1
        await self._settle(letters, done)
        self._count(outcomes, reasons, defaults)
        return len(entries)

    async def _settle(self, letters: list[dict[str, Any]], done: list[bytes]) -> None:
        # Dead letters first, then the ack: if writing them fails, nothing is acked and
        # the entries come back on reclaim (a letter may then be written twice, never lost).
        if letters:
            await self.dead_letters.park_many(self.topic, letters)
        if done:
            await self.io.ack(done)
        for raw_id in done:
            self._failures.pop(raw_id.decode("ascii"), None)

    def _count(self, outcomes: Counter[Outcome], reasons: Counter[str], defaults: Counter[str]) -> None:
        m, topic, path = self.metrics, self.topic, self._path
        for outcome, n in outcomes.items():
            m.count_handled(topic, path, outcome, n)
        if reasons:
            m.count_validation_errors(topic, path, reasons)
            m.count_dead_letters(topic, path, DeadLetterCause.INVALID, sum(reasons.values()))
        if outcomes[Outcome.DEAD_LETTERED]:
            m.count_dead_letters(topic, path, DeadLetterCause.HANDLER_FAILED, outcomes[Outcome.DEAD_LETTERED])
        if defaults:
            m.count_defaults(topic, defaults)

    def _letter(self, raw: bytes, error: Any, entry_id: str, count: int, **kw: Any) -> dict[str, Any]:
        return letter_fields(
            self.topic,
            raw,
            error,
            service=self.service,
            path=self._path,
            profile=self._profile,
            stream_id=entry_id,
            deliveries=count,
            **kw,
        )

    def _invalid(self, entry_id: str, err: ContractError, count: int) -> dict[str, Any]:
        _log.warning(
            "consumer.invalid",
            service=self.service.value,
            topic=self.topic.value,
            path=self._path,
            profile=self._profile,
            stream_id=entry_id,
            reason=err.reason,
            errors=err.loggable_errors(),
            raw_preview=err.raw_preview,
        )
        return self._letter(err.raw, err, entry_id, count)

    def _decoder_crash(
        self, entry_id: str, fields: Mapping[bytes, bytes], exc: Exception, count: int
    ) -> dict[str, Any]:
        _log.error("consumer.decoder_crash", topic=self.topic.value, stream_id=entry_id, error=repr(exc))
        return self._letter(
            field_map_bytes(fields),
            exc,
            entry_id,
            count,
            cause=DeadLetterCause.INVALID,
            reason="decoder_crash",
        )

    def _handler_failed(
        self,
        entry_id: str,
        fields: Mapping[bytes, bytes],
        exc: Exception,
        count: int,
        letters: list[dict[str, Any]],
    ) -> Outcome:
        final = count >= self.max_deliveries
        _log.warning(
            "consumer.handler_failed",
            service=self.service.value,
            topic=self.topic.value,
            stream_id=entry_id,
            deliveries=count,
            max_deliveries=self.max_deliveries,
            dead_lettered=final,
            error=f"{type(exc).__name__}: {exc}",
        )
        if not final:
            if len(self._failures) >= _MAX_REMEMBERED_FAILURES:
                self._failures.pop(next(iter(self._failures)))
            self._failures[entry_id] = exc
            return Outcome.RETRY
        letters.append(self._letter(field_map_bytes(fields), exc, entry_id, count))
        return Outcome.DEAD_LETTERED

    def _gave_up(self, entry_id: str, fields: Mapping[bytes, bytes], count: int) -> dict[str, Any]:
        last = self._failures.get(entry_id)
        msg = f"delivered {count} times without an acknowledgement (max_deliveries={self.max_deliveries})"
        if last is not None:
            msg += f"; last handler error: {type(last).__name__}: {last}"
        _log.warning("consumer.max_deliveries", topic=self.topic.value, stream_id=entry_id, deliveries=count)
        errors = [{"type": "max_deliveries", "loc": [], "msg": msg}]
        return self._letter(
            field_map_bytes(fields), errors, entry_id, count, cause=DeadLetterCause.HANDLER_FAILED
        )

    def _on_retry(self, operation: str, attempt: int, exc: BaseException) -> None:
        self.metrics.count_retry(operation)
        if operation.startswith("read"):
            # A read whose reply was lost still moved its entries to our pending list:
            # re-read our own pending entries first instead of waiting for a reclaim.
            self._recover_own = True
        _log.warning(
            "consumer.retry",
            service=self.service.value,
            topic=self.topic.value,
            operation=operation,
            attempt=attempt,
            error=f"{type(exc).__name__}: {exc}",
        )
