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
acknowledged. A handler raising :class:`~core.errors.ContractError` (its output cannot
be built or encoded, which no retry changes) dead-letters its entry at once. With
``outputs`` (the service's publisher), whatever fails stays with the entry that caused
it: its deferred outputs are taken back, and an output that cannot be sent dead-letters
its own input while the rest of the batch goes out (:mod:`core.redis.outbox`).
Connection errors are retried with backoff; the group position lives in Redis, so a
consumer resumes exactly where the group was.

Contrast with Pub/Sub (:mod:`core.redis.observer`): lower latency, no group, no
replay, and anything published while a subscriber is away is lost. Fine for
observers (dashboards, tail), never for a service.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TypeVar

from redis.exceptions import ResponseError

from core.codec import Codec, Decoded
from core.errors import ContractError, GroupRewoundError, LeaseLostError, StateAheadError, TransportError
from core.logging import get_logger
from core.metrics import ServiceMetrics
from core.redis.consumer_io import Entry, GroupIO, id_key
from core.redis.dead_letters import DeadLetters
from core.redis.fence import Fence
from core.redis.guarded import LeaseGuard
from core.redis.ledger import BatchLedger, ConsumerIdentity
from core.redis.modes import AsyncClient, decodes_responses
from core.redis.outbox import DeferredOutputs
from core.redis.retry import RetryPolicy
from core.settings import ServiceSettings
from core.topics import KeySpace, ServiceName, Topic
from core.utils.tasks import cancel_firmly

__all__ = ["FinishBatch", "Handler", "StreamConsumer"]

Handler = Callable[[Decoded, str], Awaitable[object]]
"""Handles one decoded message; gets the stream entry id. Raising leaves the entry pending,
except a :class:`~core.errors.ContractError` (its output cannot be built or encoded, which a
retry would not change): that entry is dead-lettered at once. With a ``finish_batch`` step, a
handler may return work (anything but ``None``) that step finishes for the whole batch."""

FinishBatch = Callable[[Mapping[str, object], LeaseGuard | None], Awaitable[Mapping[str, BaseException]]]
"""The batch step (:class:`StreamConsumer`'s ``finish_batch``): gets ``{entry id: work}``, what
the batch's handlers returned, and returns ``{entry id: error}`` for the entries it could not
finish (each settled as if its handler had raised that error); raising fails the whole batch.
Fenced, it also gets the partition's :class:`~core.redis.guarded.LeaseGuard`: what it writes to
Redis it writes under that lease (raising :class:`~core.errors.LeaseLostError` when it is lost:
``OncePublisher.publish_many(items, guard)``, ``Publisher.flush_outputs(guard)``); ``None``
when the consumer is not fenced."""


_log = get_logger("core.redis.consumer")
_BACKLOG_EVERY_S = 1.0
T = TypeVar("T")


class StreamConsumer:
    """One consumer of ``topic``'s stream in ``service``'s group (asyncio).

    ``instance`` names the consumer within the group; keep it stable across
    restarts of the same instance so its own pending entries are picked up at once.
    ``group_start``: where a newly created group starts (``"0"``: every entry the
    stream still holds; ``"$"``: only entries added from now on).
    ``before_ack``: awaited after each batch's handlers and before its XACK, e.g.
    ``Publisher.flush`` so outputs a handler deferred are confirmed before the inputs
    that caused them are acknowledged; if it raises, nothing of the batch is acked.
    ``outputs``: the same, per message (a service's publisher): told which entry each
    output comes from, it drops the outputs of an entry whose handler failed and flushes
    before the ack; an output that cannot be sent dead-letters its own input only.
    ``partition``: which partition stream of ``topic`` to read (``keys.partitions`` > 1).
    ``on_backlog``: gets (lag, pending) instead of the metrics (a caller summing partitions).
    ``detect_rewind``: raise :class:`GroupRewoundError` from :meth:`poll_once` / :meth:`run`
    when an entry this consumer acknowledged comes back (for handlers with state); with it,
    a batch whose outputs or ack fail raises :class:`StateAheadError` (the state must be rebuilt).
    ``lease``: the partition lease this instance must hold (:mod:`core.redis.fence`): every
    read, claim and ack is refused by the server without it, and the lease is checked again
    before anything else of a batch is written to Redis: the outputs and the batch step's writes
    go under it (:mod:`core.redis.guarded`: on one server the check rides in their write), dead
    letters and a ``before_ack`` with no batch step ahead of it wait for one read of it; a
    batch with none of them has only its ack, which the next read's script fences. Losing it
    raises :class:`LeaseLostError` from :meth:`run`.
    ``finish_batch``: one step for the work of the whole batch (e.g. execution's store and
    publish: one round trip for all its orders instead of one per order). A handler that returns
    something other than ``None`` hands that work to it; the step runs before ``before_ack``,
    with ``{entry id: work}`` and the lease to write under (:data:`FinishBatch`), and returns
    ``{entry id: error}`` for the entries it could not finish: each is settled as if its
    handler had raised that error (its outputs taken back; a
    :class:`~core.errors.ContractError` dead-letters it at once, another error leaves it pending
    for a retry, dead-lettered on its last delivery), the others go on.
    If the step raises, nothing of the batch is acknowledged (a :class:`TransportError` backs off
    and the batch comes back, as when ``before_ack`` raises).
    """

    def __init__(
        self,
        redis: AsyncClient,
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
        before_ack: Callable[[], Awaitable[object]] | None = None,
        outputs: DeferredOutputs | None = None,
        finish_batch: FinishBatch | None = None,
        partition: int = 0,
        on_backlog: Callable[[int, int], None] | None = None,
        detect_rewind: bool = False,
        lease: str | None = None,
    ) -> None:
        if decodes_responses(redis):
            # Stream ids and fields must arrive as bytes: the codec checks sizes in bytes and
            # dead letters keep the exact bytes. Fail at start, not on the first entry.
            raise ValueError("StreamConsumer needs a Redis client with decode_responses=False")
        self.topic = topic
        self.partition = partition
        self.on_backlog = on_backlog
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
        stream, group = keys.stream(topic, partition), keys.group(service)
        self.fence = (
            None if lease is None else Fence(redis, lease=lease, stream=stream, group=group, owner=instance)
        )
        self.io = GroupIO(
            redis,
            stream=stream,
            group=group,
            consumer=instance,
            retry=policy,
            group_start=group_start,
            on_retry=self._on_retry,
            fence=self.fence,
        )
        self.before_ack = before_ack
        self.outputs = outputs
        self.finish_batch = finish_batch
        self._me = ConsumerIdentity(
            topic=topic,
            service=service,
            path=codec.path.value,
            profile=codec.profile.value if codec.profile else None,
            max_deliveries=self.max_deliveries,
            partition=partition,
        )
        self._recover_own = True
        self._next_reclaim = 0.0
        self.detect_rewind = detect_rewind
        self._acked_through = (0, 0)
        # Acks owed: ids of handled batches (before_ack done) whose XACK rides with the next read
        # (one round trip per batch, not two; fenced: in the read's lease-checking script). A
        # stateful consumer whose owed ack fails learns it from that read (StateAheadError), as
        # it would from its own batch's ack. See flush_acks for when they are sent alone.
        self._owed: list[bytes] = []
        self._owed_newest = b"0-0"  # the newest owed id (rewind detection parses one per batch)
        self._busy = False  # the last read of new entries returned a full batch: more are likely waiting

    @classmethod
    def from_settings(
        cls,
        redis: AsyncClient,
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
            keys=KeySpace(settings.key_prefix, settings.topic_partitions),
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

    async def poll_once(
        self, handler: Handler, stop: asyncio.Event | None = None, *, carry_ack: bool = False
    ) -> int:
        """Handle one round: own pending entries after a (re)start, due reclaims, one new batch.

        Returns how many entries were handled, dead-lettered included.
        Raises :class:`~core.errors.TransportError` when Redis stays unreachable.
        Setting ``stop`` ends a blocking wait for new entries at once (see :meth:`_read_new`).

        Every entry handled (and not left pending to retry) is acknowledged when this returns,
        unless ``carry_ack`` (what :meth:`run` does): then the XACK of the last batch may still be
        owed, to go with the next call's read in one round
        trip (a busy consumer makes one round trip per batch, not two; one that caught up sends
        it with its wait for the next entries, acknowledged before the wait starts). An owed ack
        is sent on its own before any reclaim, own-pending read, :meth:`take_over`,
        :meth:`lag`, and when :meth:`run` ends; a caller that drives this method itself with
        ``carry_ack`` calls :meth:`flush_acks` before it stops (otherwise the batch stays pending
        and is handled again after a restart).
        """
        handled = await self._poll(handler, stop)
        if not carry_ack:
            await self.flush_acks()
        return handled

    async def _poll(self, handler: Handler, stop: asyncio.Event | None) -> int:
        if self._recover_own:
            await self.flush_acks()  # else our own pending list still holds handled entries
            entries = await self.io.read_own_pending(self.batch_size)
            if len(entries) < self.batch_size:
                self._recover_own = False
            if entries:
                return await self._process(entries, handler, await self._deliveries(entries))
        handled = 0
        now = time.monotonic()
        if now >= self._next_reclaim:
            await self.flush_acks()  # never reclaim (and handle again) what we handled
            claimed, more = await self.io.reclaim(self.reclaim_idle_ms, self.batch_size)
            if not more:
                self._next_reclaim = now + max(self.reclaim_idle_ms / 2000, 0.01)
            if claimed:
                handled += await self._process(claimed, handler, await self._deliveries(claimed))
        block = self.block_ms if handled == 0 and self.block_ms > 0 else None
        entries = await self._read_new(block, stop)
        if entries:
            if self.io.recovered:
                # An earlier read's reply was lost and a retry re-sent it (core.redis.fence):
                # these entries come first, with the delivery counts they really have.
                self.metrics.count_retry("read_recovered")
                _log.warning(
                    "consumer.read_recovered",
                    service=self.service.value,
                    stream=self.io.stream,
                    entries=len(entries),
                    first=entries[0][0].decode("ascii"),
                )
                handled += await self._process(entries, handler, await self._deliveries(entries))
            else:
                handled += await self._process(entries, handler, None)
        return handled

    async def flush_acks(self) -> None:
        """Send the XACK still owed for handled batches (see :meth:`poll_once`), if any; when it
        returns nothing this consumer handled is left unacknowledged. Raises
        :class:`~core.errors.TransportError` when Redis stays unreachable (the ids stay owed)."""
        if self._owed:
            ids = self._owed
            await self._sending_owed(self.io.ack(ids))
            self._acked_owed()

    async def _read_new(self, block: int | None, stop: asyncio.Event | None) -> list[Entry]:
        if stop is not None and stop.is_set():
            return []  # stopping: take nothing new (an owed ack is sent by run or flush_acks)
        owed = self._owed
        if owed and block is not None and not self._busy:
            # Caught up (the last read was not a full batch): the owed ack rides in the wait
            # itself, so settling a batch and waiting for the next is one round trip; an entry
            # that came meanwhile ends the wait at once and is taken in that round trip.
            acked_ms = time.time() * 1000.0  # the server acknowledges before it waits
            read = await self._sending_owed(self._read_blocking(block, stop, ack=owed))
            if read is None:
                return []  # ended by the stop: the ack may not have run, so it stays owed
            self._acked_owed(acked_ms)
        else:
            read = []
            if owed or self._busy or block is None:
                # A full batch came (more are likely waiting), or told not to wait: a read that
                # does not block, carrying the owed ack, so a batch costs one round trip and no
                # stop race; only when it finds nothing does the blocking read follow, waiting
                # from where that read ended (fenced: no second read before the wait).
                if owed:
                    read = await self._sending_owed(self.io.read_new(self.batch_size, None, ack=owed))
                    self._acked_owed()
                else:
                    read = await self.io.read_new(self.batch_size, None)
            if not read and block is not None:
                read = await self._read_blocking(block, stop) or []
        self._busy = len(read) >= self.batch_size
        return read

    async def _read_blocking(
        self, block: int, stop: asyncio.Event | None, *, ack: Sequence[bytes] = ()
    ) -> list[Entry] | None:
        """A read of new entries that may wait ``block`` ms (from where the last empty read
        ended, fenced), acknowledging ``ack`` first; ``None`` if ``stop`` ended it first."""
        read_new = self.io.read_new(self.batch_size, block, ack=ack, after=self.io.idle_after)
        if stop is None:
            return await read_new
        # A stop must not wait out CONSUMER_BLOCK_MS: race the blocking XREADGROUP with it and
        # cancel the read (redis-py drops that connection). Entries the server may already
        # have delivered stay pending for this consumer, unacknowledged: the next owner takes
        # them over (or this instance re-reads them on restart), so nothing is lost.
        read = asyncio.ensure_future(read_new)
        halt = asyncio.ensure_future(stop.wait())
        interrupted = False
        try:
            await asyncio.wait((read, halt), return_when=asyncio.FIRST_COMPLETED)
        finally:
            halt.cancel()
            if not read.done():
                interrupted = True
                await cancel_firmly(read)
        if interrupted and (read.cancelled() or read.exception() is not None):
            return None  # ended by the stop: nothing of it was handled, so nothing is acked
        return read.result()

    async def take_over(self, handler: Handler) -> int:
        """Claim every entry pending in the group, whoever holds it (``XAUTOCLAIM`` with no
        minimum idle time), and handle them in id order; returns how many.

        For the new owner of a partition: the old owner is gone (its lease expired or was
        released), so what it read and did not acknowledge is handled now, before any new
        entry, and each symbol's order holds.
        """
        await self.flush_acks()
        self.io.restart_reclaim()
        handled, more = 0, True
        while more:
            claimed, more = await self.io.reclaim(0, self.batch_size)
            if claimed:
                handled += await self._process(claimed, handler, await self._deliveries(claimed))
        self._next_reclaim = time.monotonic() + max(self.reclaim_idle_ms / 2000, 0.01)
        return handled

    async def run(
        self, handler: Handler, stop: asyncio.Event, *, keep_going: Callable[[], bool] | None = None
    ) -> None:
        """Poll until ``stop`` is set (or ``keep_going()`` turns false, e.g. a partition lease
        that could not be renewed); rides out Redis outages (logs, backs off, resumes). Acks still
        owed are sent before it returns (when Redis answers): a clean stop leaves nothing that was
        handled pending."""
        try:
            await self._run(handler, stop, keep_going)
        finally:
            if self._owed:
                try:
                    await self.flush_acks()
                except TransportError as exc:
                    # Nothing is lost: they stay pending, and their next owner handles them again
                    # (outputs are deduplicated downstream). A warning, not an error: a freeze
                    # past the lease ends this way every time.
                    _log.warning(
                        "consumer.acks_unsent_at_stop",
                        service=self.service.value,
                        topic=self.topic.value,
                        entries=len(self._owed),
                        outcome="left pending for the next owner",
                        error=str(exc),
                    )

    async def _run(
        self, handler: Handler, stop: asyncio.Event, keep_going: Callable[[], bool] | None
    ) -> None:
        next_backlog = 0.0
        pause = 0.0
        while not stop.is_set() and (keep_going is None or keep_going()):
            try:
                await self.poll_once(handler, stop, carry_ack=True)
                if time.monotonic() >= next_backlog:
                    await self.lag()
                    next_backlog = time.monotonic() + _BACKLOG_EVERY_S
                pause = 0.0
            except (GroupRewoundError, LeaseLostError, StateAheadError):
                raise
            except TransportError as exc:
                pause = min(max(pause * 2, 0.1), 5.0)
                self._recover_own = True
                _log.error(
                    "consumer.transport_error",  # Redis, or the store of a batch step
                    service=self.service.value,
                    topic=self.topic.value,
                    error=str(exc),
                    pause_s=pause,
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=pause)

    async def backlog(self) -> tuple[int, int]:
        """(entries not yet delivered to the group, entries delivered but not acknowledged), as
        :meth:`lag` reports them, with nothing settled or checked first: for a caller that has
        not started :meth:`run` yet (a partition rebuilding its state)."""
        return await self.io.backlog()

    async def lag(self) -> int:
        """Entries of the stream not yet delivered to the group, plus those pending (unacked)."""
        await self.flush_acks()  # handled entries count as done, not pending
        undelivered, pending = await self.io.backlog()
        if self.detect_rewind:
            self._check_lost_writes()
            await self._check_lost_outputs()
        if self.on_backlog is not None:
            self.on_backlog(undelivered, pending)
        else:
            self.metrics.set_backlog(self.topic, lag=undelivered, pending=pending)
        return undelivered + pending

    async def _deliveries(self, entries: Sequence[Entry]) -> dict[bytes, int]:
        return await self.io.delivery_counts([e[0] for e in entries], extra=len(self._me.failures))

    async def _process(
        self, entries: Sequence[Entry], handler: Handler, deliveries: Mapping[bytes, int] | None
    ) -> int:
        decode, topic, most, outputs = self.codec.from_fields, self.topic, self.max_deliveries, self.outputs
        if self.detect_rewind:
            self._check_rewind(entries)
        ledger = BatchLedger(self._me)
        self.metrics.ops.count_received(topic, entries)  # wire shape: legacy vs v1.0, per batch
        handled: dict[str, tuple[bytes, Mapping[bytes, bytes], int]] = {}
        finishing = self.finish_batch is not None
        waiting: dict[str, _Waiting] = {}
        counted = self._me.counted
        for raw_id, fields in entries:
            count = counted(raw_id, deliveries.get(raw_id, 2)) if deliveries is not None else 1
            if not fields:
                ledger.gone(raw_id)
                continue
            if count > most:
                ledger.gave_up(raw_id, fields, count)
                continue
            try:
                decoded = decode(topic, fields, entry_id=raw_id)  # its server time, for a lenient fill
            except ContractError as err:
                ledger.invalid(raw_id, err, count)
                continue
            except Exception as exc:  # a codec bug must not stop the service either
                ledger.decoder_crash(raw_id, fields, exc, count)
                continue
            # The handler runs inline (no coroutine of our own per entry: ~0.4 us each).
            entry_id = raw_id.decode("ascii")
            if outputs is not None:
                outputs.begin(entry_id)
            try:
                work = await handler(decoded, entry_id)
            except Exception as exc:
                self._failed(exc, (raw_id, fields, count), entry_id=entry_id, ledger=ledger)
                continue
            if work is not None and finishing:
                waiting[entry_id] = (work, (raw_id, fields, count), decoded.defaulted)
                continue  # done once the batch step finished it (_finish)
            ledger.ok(raw_id, decoded.defaulted)
            if outputs is not None:
                handled[entry_id] = (raw_id, fields, count)  # its outputs may still fail to go out
        if outputs is not None:
            outputs.begin(None)
        try:
            await self._settle_fenced(ledger, handled, entries, waiting)
        except TransportError as exc:  # handled, not settled: each comes back, uncounted
            self._me.requeue((raw_id for raw_id, fields in entries if fields), exc)
            raise
        ledger.count_into(self.metrics)
        return len(entries)

    async def _finish(
        self,
        waiting: Mapping[str, _Waiting],
        ledger: BatchLedger,
        handled: dict[str, tuple[bytes, Mapping[bytes, bytes], int]],
        guard: LeaseGuard | None,
    ) -> None:
        """Run the batch step (under ``guard``) on the work the handlers returned; each entry it
        could not finish is settled as a failed handler, the others as handled."""
        assert self.finish_batch is not None
        failures = await self.finish_batch({entry_id: w[0] for entry_id, w in waiting.items()}, guard)
        for entry_id, (_, entry, defaulted) in waiting.items():
            error = failures.get(entry_id)
            if error is not None:
                exc = error if isinstance(error, Exception) else RuntimeError(repr(error))
                self._failed(exc, entry, entry_id=entry_id, ledger=ledger)
                continue
            ledger.ok(entry[0], defaulted)
            if self.outputs is not None:
                handled[entry_id] = entry

    def _failed(
        self,
        exc: Exception,
        entry: tuple[bytes, Mapping[bytes, bytes], int],
        *,
        entry_id: str,
        ledger: BatchLedger,
    ) -> None:
        """The handler failed on one entry. The failure stays with it: the outputs it deferred
        are taken back, and the ledger decides retry or dead letter."""
        raw_id, fields, count = entry
        if self.outputs is not None:
            self.outputs.discard(entry_id)
        if isinstance(exc, ContractError):
            # Its output cannot be built or encoded: deterministic, so no retry.
            ledger.output_invalid(raw_id, fields, exc, count)
        else:
            ledger.handler_failed(raw_id, fields, exc, count)

    async def _settle_fenced(
        self,
        ledger: BatchLedger,
        handled: dict[str, tuple[bytes, Mapping[bytes, bytes], int]],
        entries: Sequence[Entry],
        waiting: Mapping[str, _Waiting],
    ) -> None:
        """:meth:`_settle`, turning its failures into what the caller must do next."""
        size = len(entries)
        try:
            await self._settle(ledger, handled, entries, waiting)
        except LeaseLostError:
            if self.outputs is not None:
                for source in (*handled, *waiting):  # a stale owner's outputs never go out later either
                    self.outputs.discard(source)
            raise
        except GroupRewoundError:
            raise
        except TransportError as exc:
            if not self.detect_rewind:
                raise  # stateless: the batch comes back and is handled the same way again
            raise StateAheadError(
                f"{self.topic.value} batch of {size} handled but not settled ({exc}): "
                "the partition's state is rebuilt from the streams"
            ) from exc

    async def _settle(
        self,
        ledger: BatchLedger,
        handled: dict[str, tuple[bytes, Mapping[bytes, bytes], int]],
        entries: Sequence[Entry],
        waiting: Mapping[str, _Waiting],
    ) -> None:
        # Outputs first (finish_batch, before_ack, deferred outputs), then dead letters, then the
        # ack: if any step fails nothing is acked and the entries come back (a duplicate at
        # worst, never a loss).
        # Fenced, nothing but the ack is written without the lease: the batch step and the
        # outputs write under it (the check rides in their write); a before_ack with no batch
        # step ahead of it, and the dead letters (whichever step made them), wait for one read
        # of it first. An ack alone goes with the next read (or the stop's ack), whose script
        # checks the lease first, so a stale owner's batch that sends nothing still changes
        # nothing in Redis.
        guard = None
        if self.fence is not None:
            if self.before_ack is not None and not waiting:
                await self.fence.check()  # a stale owner sends nothing (nor finishes its batch)
            else:
                guard = self.fence.guard
        if waiting:
            await self._finish(waiting, ledger, handled, guard)
        if self.before_ack is not None:
            await self.before_ack()
        if self.outputs is not None:
            for source, error in (await self.outputs.flush_outputs(guard)).items():
                if source in handled:
                    raw_id, fields, count = handled[source]
                    ledger.output_failed(raw_id, fields, error, count)
        if ledger.letters:
            if guard is not None and self.fence is not None:  # not written under the lease
                await self.fence.check()
            await self.dead_letters.park_many(self.topic, ledger.letters)
        if ledger.done:
            self._owed += ledger.done  # sent with the next read (see poll_once)
            if self.detect_rewind:  # one id parsed per batch, not every one (~0.2 us an entry)
                self._owed_newest = max(self._owed_newest, _newest(entries, ledger.done), key=id_key)

    async def _sending_owed(self, call: Awaitable[T]) -> T:
        """``call``, which acknowledges the owed ids. A stateful consumer whose ack may have
        failed is ahead of Redis (those entries would come back and be handled twice):
        :class:`StateAheadError`, as when a batch's own ack fails."""
        try:
            return await call
        except (GroupRewoundError, LeaseLostError):
            raise
        except TransportError as exc:
            if not self.detect_rewind:
                raise  # stateless: they come back and are handled the same way again
            raise StateAheadError(
                f"{self.topic.value}: {len(self._owed)} handled entries not acknowledged ({exc}): "
                "the partition's state is rebuilt from the streams"
            ) from exc

    def _acked_owed(self, acked_ms: float | None = None) -> None:
        """Bookkeeping once the owed ids are acknowledged (at ``acked_ms``, default now)."""
        ids, self._owed = self._owed, []
        self._me.forget(ids)
        # Every entry's hop latency (XADD -> outputs out and acked): ~0.2 us an entry.
        self.metrics.consume_latency.observe_ids(self.topic.value, ids, acked_ms)
        if self.detect_rewind:
            self._acked_through = max(self._acked_through, id_key(self._owed_newest))

    def _check_lost_writes(self) -> None:
        # The group's last-delivered id never goes back by itself: behind what this consumer
        # acknowledged, the server lost writes (restarted from an older snapshot, or failed
        # over to a replica that was behind), whether or not those entries ever come back.
        last = self.io.last_delivered
        if last is None or id_key(last) >= self._acked_through:
            return
        acked = "-".join(map(str, self._acked_through))
        _log.error(
            "consumer.lost_writes",
            service=self.service.value,
            stream=self.io.stream,
            group_last_delivered=last.decode("ascii"),
            acknowledged_through=acked,
        )
        raise GroupRewoundError(
            f"{self.io.stream}: the group's last-delivered id {last.decode('ascii')} is behind {acked}, "
            f"which this consumer acknowledged: the server lost the entries after {last.decode('ascii')} "
            "(older snapshot or a replica that was behind); state is rebuilt from what the stream holds"
        )

    async def _check_lost_outputs(self) -> None:
        # Each output stream's last generated id never goes back by itself (trimming removes
        # entries from the head and leaves it): behind the newest id this consumer's publisher
        # wrote there, the node lost writes. On a cluster the input's group may be intact
        # (another node), so a rebuild cannot bring those outputs back: say exactly what was
        # lost, loudly, and rebuild anyway.
        written: dict[str, str] = getattr(self.outputs, "written", None) or {}
        for stream, newest in list(written.items()):
            try:
                info = await self.io.redis.xinfo_stream(stream)
                raw = info.get("last-generated-id") or b"0-0"
            except ResponseError:  # the stream itself is gone
                raw = b"0-0"
            last = raw if isinstance(raw, bytes) else str(raw).encode()
            if id_key(last) >= id_key(newest.encode("ascii")):
                continue
            del written[stream]
            _log.error(
                "consumer.lost_outputs",
                service=self.service.value,
                stream=stream,
                written=newest,
                stream_ends_at=last.decode("ascii"),
            )
            raise GroupRewoundError(
                f"{stream} lost entries this consumer wrote: it ends at {last.decode('ascii')}, "
                f"{newest} was written (older snapshot or a replica that was behind); outputs after "
                f"{last.decode('ascii')} are gone unless their inputs are handled again"
            )

    def _check_rewind(self, entries: Sequence[Entry]) -> None:
        if id_key(entries[0][0]) > self._acked_through:
            return  # Redis returns a batch in id order: its first entry is its smallest
        failed = self._me.failures
        for raw_id, _ in entries:
            if id_key(raw_id) <= self._acked_through and raw_id.decode("ascii") not in failed:
                acked = "-".join(map(str, self._acked_through))
                raise GroupRewoundError(
                    f"{self.topic.value} entry {raw_id.decode()} came back after this consumer acknowledged "
                    f"it (acknowledged through {acked}): the server lost acknowledged writes (fail-over); "
                    "state must be rebuilt"
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


_Waiting = tuple[object, tuple[bytes, Mapping[bytes, bytes], int], Sequence[str]]
"""An entry whose handler returned work for the batch step: the work, the entry (id, fields,
deliveries) and the fields its decoding defaulted (counted once it is done)."""


def _newest(entries: Sequence[Entry], done: Sequence[bytes]) -> bytes:
    """The newest of ``done``, ids of ``entries`` (the ledger acknowledges entries of its batch
    only): a batch is one reply, in id order, so it is the last entry of the batch that is in
    ``done`` (the ledger's own order is not the batch's: an entry whose output failed moves to
    its end). Ids of no entry of the batch are compared as numbers."""
    acked = set(done)
    newest = next((raw_id for raw_id, _ in reversed(entries) if raw_id in acked), None)
    return newest if newest is not None else max(done, key=id_key)
