"""What one batch of stream entries came to: which to ack, what to dead-letter, what to count.

The consumer decides (decode, handle, retry or give up); a :class:`BatchLedger`
writes the decision down, builds the dead letters, logs each bad entry with its
structured errors (a preview of the payload, never all of it) and finally adds
the batch's counts to the metrics in a few calls instead of one per entry.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from core.codec.fields import field_map_bytes
from core.errors import ContractError
from core.logging import get_logger
from core.metrics import Outcome, ServiceMetrics
from core.redis.dead_letters import DeadLetterCause, letter_fields
from core.topics import ServiceName, Topic

__all__ = ["BatchLedger", "ConsumerIdentity"]

_log = get_logger("core.redis.consumer")
_MAX_REMEMBERED_FAILURES = 10_000


@dataclass(slots=True)
class ConsumerIdentity:
    """Who is consuming what, for dead letters and logs; remembers recent handler errors."""

    topic: Topic
    service: ServiceName
    path: str
    profile: str | None
    max_deliveries: int
    failures: dict[str, BaseException] = field(default_factory=dict)
    """Last handler error per entry left pending, so a later give-up can name it."""

    def remember(self, entry_id: str, exc: BaseException) -> None:
        """Note ``exc`` as the last failure of ``entry_id`` (bounded memory)."""
        if len(self.failures) >= _MAX_REMEMBERED_FAILURES:
            self.failures.pop(next(iter(self.failures)))
        self.failures[entry_id] = exc

    def forget(self, raw_ids: Iterable[bytes]) -> None:
        """Drop what is remembered about entries that were acknowledged."""
        if self.failures:
            for raw_id in raw_ids:
                self.failures.pop(raw_id.decode("ascii"), None)


class BatchLedger:
    """The outcome of each entry of one batch."""

    __slots__ = ("defaults", "done", "letters", "me", "outcomes", "reasons")

    def __init__(self, me: ConsumerIdentity) -> None:
        self.me = me
        self.done: list[bytes] = []
        """Entries to acknowledge."""
        self.letters: list[dict[str, Any]] = []
        """Dead letters to write before acknowledging."""
        self.outcomes: Counter[Outcome] = Counter()
        self.reasons: Counter[str] = Counter()
        self.defaults: Counter[str] = Counter()

    def ok(self, raw_id: bytes, defaulted: Iterable[str]) -> None:
        """The handler finished with the entry."""
        self.done.append(raw_id)
        self.outcomes[Outcome.OK] += 1
        for name in defaulted:
            self.defaults[name] += 1

    def gone(self, raw_id: bytes) -> None:
        """The entry was trimmed or deleted while pending: nothing left to handle."""
        _log.warning("consumer.entry_gone", topic=self.me.topic.value, stream_id=raw_id.decode())
        self.done.append(raw_id)

    def invalid(self, raw_id: bytes, err: ContractError, deliveries: int) -> None:
        """The entry did not decode: dead-letter it with the structured errors."""
        me, entry_id = self.me, raw_id.decode("ascii")
        _log.warning(
            "consumer.invalid",
            service=me.service.value,
            topic=me.topic.value,
            path=me.path,
            profile=me.profile,
            stream_id=entry_id,
            reason=err.reason,
            errors=err.loggable_errors(),
            raw_preview=err.raw_preview,
        )
        self._park(raw_id, err.raw, err, deliveries, Outcome.INVALID)
        self.reasons[err.reason] += 1

    def decoder_crash(
        self, raw_id: bytes, fields: Mapping[bytes, bytes], exc: Exception, deliveries: int
    ) -> None:
        """The codec raised something other than ContractError (a bug): dead-letter the entry."""
        _log.error(
            "consumer.decoder_crash", topic=self.me.topic.value, stream_id=raw_id.decode(), error=repr(exc)
        )
        self._park(
            raw_id,
            field_map_bytes(fields),
            exc,
            deliveries,
            Outcome.INVALID,
            cause=DeadLetterCause.INVALID,
            reason="decoder_crash",
        )
        self.reasons["decoder_crash"] += 1

    def handler_failed(
        self, raw_id: bytes, fields: Mapping[bytes, bytes], exc: Exception, deliveries: int
    ) -> None:
        """The handler raised: leave the entry pending, or dead-letter it on its last delivery."""
        me, entry_id = self.me, raw_id.decode("ascii")
        final = deliveries >= me.max_deliveries
        _log.warning(
            "consumer.handler_failed",
            service=me.service.value,
            topic=me.topic.value,
            stream_id=entry_id,
            deliveries=deliveries,
            max_deliveries=me.max_deliveries,
            dead_lettered=final,
            error=f"{type(exc).__name__}: {exc}",
        )
        if final:
            self._park(raw_id, field_map_bytes(fields), exc, deliveries, Outcome.DEAD_LETTERED)
        else:
            me.remember(entry_id, exc)
            self.outcomes[Outcome.RETRY] += 1

    def gave_up(self, raw_id: bytes, fields: Mapping[bytes, bytes], deliveries: int) -> None:
        """Delivered more than max_deliveries times (consumers kept dying on it): park unhandled."""
        me, entry_id = self.me, raw_id.decode("ascii")
        msg = f"delivered {deliveries} times without an acknowledgement (max_deliveries={me.max_deliveries})"
        last = me.failures.get(entry_id)
        if last is not None:
            msg += f"; last handler error: {type(last).__name__}: {last}"
        _log.warning(
            "consumer.max_deliveries", topic=me.topic.value, stream_id=entry_id, deliveries=deliveries
        )
        errors = [{"type": "max_deliveries", "loc": [], "msg": msg}]
        self._park(
            raw_id,
            field_map_bytes(fields),
            errors,
            deliveries,
            Outcome.DEAD_LETTERED,
            cause=DeadLetterCause.HANDLER_FAILED,
        )

    def count_into(self, metrics: ServiceMetrics) -> None:
        """Add this batch's counts to ``metrics``."""
        topic, path = self.me.topic, self.me.path
        for outcome, n in self.outcomes.items():
            metrics.count_handled(topic, path, outcome, n)
        if self.reasons:
            metrics.count_validation_errors(topic, path, self.reasons)
            metrics.count_dead_letters(topic, path, DeadLetterCause.INVALID, sum(self.reasons.values()))
        gave_up = self.outcomes[Outcome.DEAD_LETTERED]
        if gave_up:
            metrics.count_dead_letters(topic, path, DeadLetterCause.HANDLER_FAILED, gave_up)
        if self.defaults:
            metrics.count_defaults(topic, self.defaults)

    def _park(
        self, raw_id: bytes, raw: bytes, error: Any, deliveries: int, outcome: Outcome, **kw: Any
    ) -> None:
        me = self.me
        self.letters.append(
            letter_fields(
                me.topic,
                raw,
                error,
                service=me.service,
                path=me.path,
                profile=me.profile,
                stream_id=raw_id.decode("ascii"),
                deliveries=deliveries,
                **kw,
            )
        )
        self.done.append(raw_id)
        self.outcomes[outcome] += 1
