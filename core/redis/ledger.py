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
from core.metrics import IgnoreReason, Outcome, ServiceMetrics
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
    partition: int | None = None
    """The partition stream being read (recorded on dead letters: ids are unique per stream)."""
    failures: dict[str, BaseException] = field(default_factory=dict)
    """Last handler error per entry left pending, so a later give-up can name it."""
    requeued: dict[str, int] = field(default_factory=dict)
    """Times each entry left pending came back because its batch could not be settled (Redis
    or the store unreachable), not because handling it failed (see :meth:`requeue`)."""

    def remember(self, entry_id: str, exc: BaseException) -> None:
        """Note ``exc`` as the last failure of ``entry_id`` (bounded memory)."""
        if len(self.failures) >= _MAX_REMEMBERED_FAILURES:
            self.failures.pop(next(iter(self.failures)))
        self.failures[entry_id] = exc

    def requeue(self, raw_ids: Iterable[bytes], exc: BaseException) -> None:
        """Note that the batch of ``raw_ids`` was handled but could not be settled (``exc``, a
        :class:`~core.errors.TransportError`): each comes back once more, and that delivery does
        not count toward ``max_deliveries``. An outage of the store or of Redis must not park
        good entries; a give-up still names the last error."""
        for raw_id in raw_ids:
            entry_id = raw_id.decode("ascii")
            if entry_id not in self.requeued and len(self.requeued) >= _MAX_REMEMBERED_FAILURES:
                self.requeued.pop(next(iter(self.requeued)))
            self.requeued[entry_id] = self.requeued.get(entry_id, 0) + 1
            self.remember(entry_id, exc)

    def counted(self, raw_id: bytes, deliveries: int) -> int:
        """The deliveries of ``raw_id`` that count toward ``max_deliveries``."""
        return deliveries - self.requeued.get(raw_id.decode("ascii"), 0) if self.requeued else deliveries

    def forget(self, raw_ids: Iterable[bytes]) -> None:
        """Drop what is remembered about entries that were acknowledged."""
        if self.failures or self.requeued:
            for raw_id in raw_ids:
                entry_id = raw_id.decode("ascii")
                self.failures.pop(entry_id, None)
                self.requeued.pop(entry_id, None)


class BatchLedger:
    """The outcome of each entry of one batch."""

    __slots__ = ("defaults", "done", "gone_count", "letters", "me", "ok_count", "outcomes", "reasons")

    def __init__(self, me: ConsumerIdentity) -> None:
        self.me = me
        self.done: list[bytes] = []
        """Entries to acknowledge."""
        self.letters: list[dict[str, Any]] = []
        """Dead letters to write before acknowledging."""
        self.outcomes: Counter[Outcome] = Counter()
        """Every outcome but ok, which is :attr:`ok_count`."""
        self.ok_count = 0
        """Entries handled fine: a plain int, because counting by an enum key hashes it in
        Python (``Enum.__hash__``), ~0.2 us an entry on the consumer's hot path."""
        self.reasons: Counter[str] = Counter()
        self.defaults: Counter[str] = Counter()
        self.gone_count = 0

    def ok(self, raw_id: bytes, defaulted: Iterable[str]) -> None:
        """The handler finished with the entry."""
        self.done.append(raw_id)
        self.ok_count += 1
        if defaulted:  # rare (a lenient fill): skip the loop set-up on every other entry
            for name in defaulted:
                self.defaults[name] += 1

    def gone(self, raw_id: bytes) -> None:
        """The entry was trimmed or deleted while pending: nothing left to handle (counted as
        ignored, reason ``gone``; logged once per batch)."""
        if not self.gone_count:
            _log.warning("consumer.entry_gone", topic=self.me.topic.value, stream_id=raw_id.decode())
        self.gone_count += 1
        self.done.append(raw_id)

    def output_invalid(
        self, raw_id: bytes, fields: Mapping[bytes, bytes], err: ContractError, deliveries: int
    ) -> None:
        """The handler's output could not be built or encoded (the same on every retry):
        dead-letter the input at once, with the output's structured errors."""
        me = self.me
        _log.warning(
            "consumer.output_invalid",
            service=me.service.value,
            topic=me.topic.value,
            stream_id=raw_id.decode("ascii"),
            reason=err.reason,
            errors=err.loggable_errors(),
        )
        self._park(
            raw_id,
            field_map_bytes(fields),
            err.loggable_errors(),
            deliveries,
            Outcome.DEAD_LETTERED,
            cause=DeadLetterCause.HANDLER_FAILED,
            reason=err.reason,
        )

    def output_failed(
        self, raw_id: bytes, fields: Mapping[bytes, bytes], exc: BaseException, deliveries: int
    ) -> None:
        """The entry was handled but its output could not be sent (only it, the others were):
        dead-letter it instead of counting it as done."""
        _log.error(
            "consumer.output_failed",
            service=self.me.service.value,
            topic=self.me.topic.value,
            stream_id=raw_id.decode("ascii"),
            error=f"{type(exc).__name__}: {exc}",
        )
        self.ok_count -= 1
        self.done.remove(raw_id)
        self._park(
            raw_id,
            field_map_bytes(fields),
            [{"type": "serialization", "loc": [], "msg": f"output could not be sent: {exc!r}"}],
            deliveries,
            Outcome.DEAD_LETTERED,
            cause=DeadLetterCause.HANDLER_FAILED,
            reason="serialization",
        )

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
            msg += f"; last error: {type(last).__name__}: {last}"
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
        if self.ok_count:
            metrics.count_handled(topic, path, Outcome.OK, self.ok_count)
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
        if self.gone_count:
            metrics.count_ignored(topic, IgnoreReason.GONE, self.gone_count)

    def _park(
        self, raw_id: bytes, raw: bytes, error: Any, deliveries: int, outcome: Outcome, **kw: Any
    ) -> None:
        me = self.me
        self.letters.append(
            _writable(
                letter_fields(
                    me.topic,
                    raw,
                    error,
                    service=me.service,
                    path=me.path,
                    profile=me.profile,
                    stream_id=raw_id.decode("ascii"),
                    partition=me.partition,
                    deliveries=deliveries,
                    **kw,
                )
            )
        )
        self.done.append(raw_id)
        self.outcomes[outcome] += 1


def _writable(letter: dict[str, Any]) -> dict[str, Any]:
    """The dead letter with every text made writable as UTF-8: an error message may quote a
    lone surrogate from the payload, and a letter Redis cannot take would fail the whole batch."""
    return {
        name: value.encode("utf-8", "backslashreplace").decode("utf-8") if isinstance(value, str) else value
        for name, value in letter.items()
    }
