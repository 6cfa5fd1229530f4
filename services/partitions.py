"""Several instances of one service: each partition of its input read by one owner at a time.

:class:`PartitionedConsumer` is what a consuming service instance runs. Every
``PARTITION_LEASE_MS / 3`` it heartbeats its membership, works out which partitions
it should own (:func:`core.redis.leases.desired_partitions`), releases the ones it
should not (after the current batch is acknowledged), renews the ones it holds and
tries to take the ones it wants. For each partition it holds it runs a worker:

1. a business object of its own (``factory``), so per-symbol state never mixes with
   another partition's and is rebuilt from scratch when a partition moves;
2. **state rebuild**: if the object has ``replay(decoded, entry_id)``, every entry of the
   partition's stream the group already finished (up to its last-delivered id, minus
   what is pending) is fed to it, in order, without publishing anything; an entry it
   raises for is skipped, logged and counted (``replay_skipped``), never fatal, or one
   bad entry (e.g. one dead-lettered because its handler failed) would stop the partition;
3. **takeover**: every entry still pending in the group (the previous owner read it
   and died, or released, before acknowledging) is claimed with ``XAUTOCLAIM`` and
   handled now, before anything new, so each symbol's order holds;
4. then the ordinary consumer loop, for as long as the lease is known to be held,
   or until the group hands back an entry it had acknowledged (a fail-over lost
   acknowledged writes): the worker then ends and starts again from step 1, so the
   state is rebuilt from what Redis still holds. A worker that ends with an error is
   started again the same way, and counted (``partition_worker_failures``).

An instance that dies stops renewing: after ``PARTITION_LEASE_MS`` its leases and its
membership expire, and the next tick of a live instance takes its partitions (the
bound is about 1.3 x the TTL plus the rebuild). A clean stop releases at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

from redis.exceptions import RedisError

from core.codec import Decoded
from core.errors import ContractError, GroupRewoundError, TransportError
from core.logging import get_logger
from core.redis import StreamConsumer
from core.redis.dead_letters import DeadLetters
from core.redis.leases import PartitionLeases, desired_partitions
from services.runtime import ConsumingService, ServiceContext

__all__ = ["PartitionFactory", "PartitionedConsumer", "replay_history"]

PartitionFactory = Callable[[ServiceContext], ConsumingService]
"""Builds a fresh business object for one partition, on that partition's context."""

_log = get_logger("services.partitions")
_REPLAY_PAGE = 1_000
_SKIPS_LOGGED = 10  # per rebuild; every skip is counted (replay_skipped)
_TROUBLE = (TransportError, RedisError, OSError)


async def replay_history(
    consumer: StreamConsumer,
    apply: Callable[[Decoded, str], object],
    on_skip: Callable[[str, Exception], object] | None = None,
    parked: Collection[bytes] = (),
) -> int:
    """Feed ``apply`` every entry of the consumer's stream its group has finished, in order, with
    its entry id (the business object's dedupe key, so a later redelivery of one is recognised);
    returns how many it applied. Entries that were dead-lettered (``parked``: their ids, as
    :meth:`~core.redis.dead_letters.DeadLetters.parked` finds them) were finished without being
    handled and are skipped, as are entries that do not decode: a codec changed since (a fix
    deployed, a lenient profile) would otherwise put into the state what never acted.
    An entry ``apply`` raises for is skipped too: logged (``partition.replay_skipped``, with its id
    and the error) and passed to ``on_skip``; the rest of the history is still applied."""
    last, pending = await consumer.io.position()
    if last in (b"0-0", b"0"):
        return 0
    # In shadow mode, decoded by the primary codec alone: every entry here was compared when it
    # was handled, and shadow evidence counts handled messages (a rebuild must not inflate it).
    decode = getattr(consumer.codec, "primary", consumer.codec).from_fields
    after: bytes | str = "-"
    applied = skipped = 0
    while True:
        entries = await consumer.io.history(after, last, _REPLAY_PAGE)
        for raw_id, fields in entries:
            if raw_id in pending or raw_id in parked or not fields:
                continue
            try:
                decoded = decode(consumer.topic, fields, entry_id=raw_id)
            except (ContractError, ValueError):
                continue
            entry_id = raw_id.decode("ascii")
            try:
                apply(decoded, entry_id)
            except Exception as exc:
                # Contained: raised out of here it would end the worker, and every rebuild after
                # would meet the same entry (e.g. one whose handler failed and was dead-lettered),
                # so the partition would never handle anything again while it still looked owned.
                skipped += 1
                if skipped <= _SKIPS_LOGGED:  # a bug failing every entry must not log the stream
                    _log.error(
                        "partition.replay_skipped",
                        instance=consumer.instance,
                        partition=consumer.partition,
                        topic=consumer.topic.value,
                        entry_id=entry_id,
                        error=repr(exc),
                    )
                if on_skip is not None:
                    on_skip(entry_id, exc)
                continue
            applied += 1
        if len(entries) < _REPLAY_PAGE:
            return applied
        after = entries[-1][0]


def _in_process(redis: object) -> bool:
    # ``cdb run`` without a Redis URL runs on an embedded fakeredis: one process, so one
    # instance by definition, and fakeredis has no Lua without an extra package.
    return type(redis).__module__.startswith("fakeredis")


class _SoloLeases(PartitionLeases):
    """The only instance there can be (embedded fakeredis): owns every partition, no keys."""

    async def heartbeat(self) -> list[str]:
        return [self.instance]

    async def members(self) -> list[str]:
        return [self.instance]

    async def leave(self) -> None:
        return None

    async def acquire(self, partition: int) -> bool:
        return True

    async def renew(self, partition: int) -> bool:
        return True

    async def release(self, partition: int) -> bool:
        return True


@dataclass
class _Worker:
    partition: int
    stop: asyncio.Event
    valid_until: float
    task: asyncio.Task[None] | None = None
    backlog: tuple[int, int] = (0, 0)


@dataclass
class PartitionedConsumer:
    """One instance's share of its service's partitions (see the module docstring)."""

    svc: ConsumingService
    ctx: ServiceContext
    factory: PartitionFactory | None = None
    consumer_options: dict[str, Any] = field(default_factory=dict)
    workers: dict[int, _Worker] = field(default_factory=dict)

    def __post_init__(self) -> None:
        settings = self.ctx.settings
        self.ttl_s = settings.partition_lease_ms / 1000.0
        self.tick_s = self.ttl_s / 3
        leases = _SoloLeases if _in_process(self.ctx.redis) else PartitionLeases
        self.leases = leases(
            self.ctx.redis, self.ctx.keys, self.ctx.service, settings.instance, settings.partition_lease_ms
        )

    @property
    def owned(self) -> list[int]:
        """The partitions this instance holds now."""
        return sorted(self.workers)

    async def run(self, stop: asyncio.Event) -> None:
        """Own partitions until ``stop`` is set; then finish each one's batch and release it.

        If the task is cancelled (a crash, as the tests simulate it) nothing is released:
        the leases expire and another instance takes over, as after a real crash.
        """
        try:
            while not stop.is_set():
                await self._tick()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=self.tick_s)
        except asyncio.CancelledError:
            for worker in self.workers.values():
                if worker.task is not None:
                    worker.task.cancel()
            raise
        for partition in list(self.workers):
            await self._release(partition)
        with contextlib.suppress(*_TROUBLE):
            await self.leases.leave()

    async def _tick(self) -> None:
        self._reap()
        try:
            sent = time.monotonic()
            members = await self.leases.heartbeat()
            want = desired_partitions(members, self.leases.instance, self.ctx.keys.partitions)
            for partition in [p for p in self.workers if p not in want]:
                await self._release(partition)
            for partition, worker in list(self.workers.items()):
                if await self.leases.renew(partition):
                    worker.valid_until = sent + self.ttl_s
                else:
                    _log.warning("partition.lost", instance=self.leases.instance, partition=partition)
                    await self._stop_worker(partition)
            for partition in sorted(want - self.workers.keys()):
                if await self.leases.acquire(partition):
                    self._start_worker(partition, sent + self.ttl_s)
        except Exception as exc:
            # Workers keep going until their lease deadline passes; the next tick retries. Not
            # only Redis errors: during a cluster fail-over redis-py's cluster client can raise
            # AttributeError on a connection torn down mid-command, and a tick must never end
            # the instance (seen once in 5 runs of the manual-failover test).
            _log.warning("partition.tick_failed", instance=self.leases.instance, error=repr(exc))
        self._publish_owned()

    def _reap(self) -> None:
        for partition, worker in list(self.workers.items()):
            task = worker.task
            if task is not None and task.done() and not worker.stop.is_set():
                # A worker ended by itself: its lease deadline passed, or it failed. Drop it; the
                # lease (if still ours) is taken again below and the partition rebuilt.
                error = None if task.cancelled() else task.exception()
                if error is not None and not isinstance(error, GroupRewoundError):
                    # Counted, so a worker that keeps failing and being started again shows in
                    # live status; a rewind is a planned restart, counted on its own below.
                    self.ctx.count("partition_worker_failures")
                if isinstance(error, GroupRewoundError):
                    # Loud: the server lost writes this partition had seen (named in the error).
                    self.ctx.count("lost_writes_detected")
                    _log.error(
                        "partition.lost_writes",
                        instance=self.leases.instance,
                        partition=partition,
                        error=str(error),
                    )
                _log.warning(
                    "partition.worker_ended",
                    instance=self.leases.instance,
                    partition=partition,
                    error=repr(error) if error else None,
                )
                del self.workers[partition]

    def _start_worker(self, partition: int, valid_until: float) -> None:
        worker = _Worker(partition, asyncio.Event(), valid_until)
        worker.task = asyncio.create_task(
            self._work(worker), name=f"cdb-{self.ctx.service.value}-p{partition}"
        )
        self.workers[partition] = worker
        _log.info("partition.acquired", instance=self.leases.instance, partition=partition)

    async def _stop_worker(self, partition: int) -> None:
        worker = self.workers.pop(partition, None)
        if worker is None or worker.task is None:
            return
        worker.stop.set()
        with contextlib.suppress(Exception):
            await worker.task

    async def _release(self, partition: int) -> None:
        await self._stop_worker(partition)  # the current batch is acked first
        with contextlib.suppress(*_TROUBLE):
            await self.leases.release(partition)
        _log.info("partition.released", instance=self.leases.instance, partition=partition)
        self._publish_owned()

    def _publish_owned(self) -> None:
        self.ctx.owned[:] = self.owned
        lag = sum(w.backlog[0] for w in self.workers.values())
        pending = sum(w.backlog[1] for w in self.workers.values())
        topic = self.ctx.service.consumes
        if topic is not None:
            self.ctx.metrics.set_backlog(topic, lag=lag, pending=pending)

    async def _work(self, worker: _Worker) -> None:
        if self.factory is not None:
            # Its own defer queue too: this partition's flush sends this partition's outputs.
            ctx = dataclasses.replace(self.ctx, publisher=self.ctx.publisher.sibling())
            svc = self.factory(ctx)
        else:
            ctx, svc = self.ctx, self.svc
        topic = ctx.service.consumes
        assert topic is not None
        solo = isinstance(self.leases, _SoloLeases)

        def note_backlog(lag: int, pending: int) -> None:
            worker.backlog = (lag, pending)

        consumer = StreamConsumer(
            ctx.redis,
            topic=topic,
            service=ctx.service,
            codec=ctx.codec,
            keys=ctx.keys,
            instance=ctx.settings.instance,
            metrics=ctx.metrics,
            dead_letters=ctx.dead_letters,
            partition=worker.partition,
            on_backlog=note_backlog,
            # After a fail-over that lost acknowledged writes, stop and rebuild: the object's
            # state is ahead of what Redis still has (core.errors.GroupRewoundError).
            detect_rewind=self.factory is not None,
            # Every read, claim and ack checks this instance still holds the lease, atomically
            # on the server (core.redis.fence); fakeredis (one process, no Lua) needs no fence.
            lease=None if solo else ctx.keys.lease(ctx.service, worker.partition),
            # Outputs the handler deferred are flushed before the batch's ack, each tied to the
            # entry that made it (a failure dead-letters that entry alone); a business object's
            # own per-batch steps run just before, after the lease check: ``finish_batch`` (the
            # work its handler returned, e.g. execution's store and publish), then ``before_ack``
            # (e.g. execution's marks).
            **{
                "outputs": ctx.publisher,
                "finish_batch": getattr(svc, "finish_batch", None),
                "before_ack": getattr(svc, "before_ack", None),
                **self.consumer_options,
            },
        )

        def held() -> bool:
            return time.monotonic() < worker.valid_until

        await self._prepare(consumer, svc, worker, held)
        await consumer.run(svc.handle, worker.stop, keep_going=held)

    async def _prepare(
        self, consumer: StreamConsumer, svc: ConsumingService, worker: _Worker, held: Callable[[], bool]
    ) -> None:
        """Group, state rebuild, takeover; retried while Redis is away and the lease holds."""
        replay = getattr(svc, "replay", None)
        pause = 0.1
        while not worker.stop.is_set() and held():
            try:
                await consumer.ensure_group()
                # Counted in the instance's lag from the start: a rebuild can take a while, and
                # until the first read the consumer reports nothing of its own.
                worker.backlog = await consumer.backlog()
                self._publish_owned()
                if replay is not None:
                    await self._rebuild(consumer, replay, worker)
                claimed = await consumer.take_over(svc.handle)
                if claimed:
                    _log.info(
                        "partition.took_over",
                        instance=consumer.instance,
                        partition=worker.partition,
                        pending=claimed,
                    )
                return
            except _TROUBLE as exc:
                _log.warning(
                    "partition.prepare_failed",
                    instance=consumer.instance,
                    partition=worker.partition,
                    error=str(exc),
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(worker.stop.wait(), timeout=pause)
                pause = min(pause * 2, 2.0)

    async def _rebuild(
        self, consumer: StreamConsumer, replay: Callable[[Decoded, str], object], worker: _Worker
    ) -> None:
        """The state rebuild (:func:`replay_history`); the entries it skipped are counted in
        ``replay_skipped`` (live status, ``cdb status --json``)."""
        skipped: list[str] = []
        parked = await DeadLetters(self.ctx.redis, self.ctx.keys).parked(consumer.topic, worker.partition)
        replayed = await replay_history(
            consumer, replay, lambda entry_id, _: skipped.append(entry_id), parked=parked
        )
        if skipped:  # counted once the rebuild is done: one retried after a Redis error meets them again
            self.ctx.count("replay_skipped", len(skipped))
        _log.info(
            "partition.rebuilt",
            instance=consumer.instance,
            partition=worker.partition,
            entries=replayed,
            skipped=len(skipped),
        )
