"""The out-of-band shadow comparator: shadow mode that costs the checked service nothing.

In-process shadow mode (``CONTRACT_SHADOW=true``) decodes every message twice inside
the service. The comparator does the same comparison in a process of its own: it
reads the checked service's input topic through **its own consumer group**
(:func:`comparator_group`, one per checked service), so it sees every entry the
service sees, at its own pace and on its own CPU, and decodes each on both paths
with a :class:`~migration.shadow.ShadowCodec` (the same comparison rules, the same
``shadow.mismatch`` log lines, the same ``cdb_shadow_*`` counters labelled with the
checked service). The service reads nothing more and decodes nothing more.

What it does not do: act on a message, publish, or dead-letter. An entry the
primary path refuses is dead-lettered by the service itself, exactly as with
in-process shadow; here it only counts as a ``<decode>`` mismatch when the other
path accepts it (an entry of a later contract version than the legacy path reads is counted
apart, by version, by the same codec rule: :func:`~migration.shadow.later_version`). Every
entry is acknowledged in the comparator's group once compared; entries pending for a
comparator instance that died are reclaimed after ``reclaim_idle_ms`` by another one (several
instances share a group's work, as service instances do). Partition-aware: one reader per partition stream.

Cost per entry (it must keep up with the pipeline on the same cores): the codec's
counts reach the metrics once per batch, not once per entry (a Prometheus label
look-up per entry costs about a tenth of a comparison), and after a full batch the
next one is asked for before this one is compared, so Redis prepares it meanwhile.
Caught up, a reader waits ``pace_ms`` between reads instead of waking for every new
entry: a wake per entry would take CPU from the checked service on shared cores (its
round trip, Redis's reply, a context switch) for evidence nobody needs within 50 ms.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Mapping, Sequence

from core.errors import ContractError, TransportError
from core.logging import get_logger
from core.metrics import ServiceMetrics
from core.redis.consumer_io import Entry, GroupIO
from core.redis.modes import AsyncClient
from core.redis.retry import RetryPolicy
from core.topics import KeySpace, ServiceName, Topic
from migration.shadow import ShadowCodec

__all__ = ["ShadowComparator", "comparator_group"]

_log = get_logger("migration.comparator")
_BACKLOG_EVERY_S = 1.0


def comparator_group(keys: KeySpace, service: ServiceName) -> str:
    """The consumer group the comparator of ``service`` reads ``service``'s input with."""
    return f"{keys.prefix}cdb-shadow-{service.value}"


class ShadowComparator:
    """Compares every entry of ``service``'s input topic on both paths, in its own group.

    ``partitions``: which partition streams to read (default: all of ``keys.partitions``).
    ``group_start``: where a new group starts (``"0"``: every entry still held; ``"$"``: new ones).
    The comparator reports the codec's counts to ``metrics`` itself, once per batch: it takes
    the codec's per-message callback (``on_compare``) over, so nothing is counted twice.
    """

    def __init__(
        self,
        redis: AsyncClient,
        *,
        service: ServiceName,
        codec: ShadowCodec,
        keys: KeySpace,
        instance: str,
        metrics: ServiceMetrics,
        partitions: Sequence[int] | None = None,
        batch_size: int = 500,
        block_ms: int = 200,
        reclaim_idle_ms: int = 30_000,
        group_start: str = "0",
        retry: RetryPolicy | None = None,
        pace_ms: int = 50,
    ) -> None:
        topic = service.consumes
        if topic is None:
            raise ValueError(f"{service.value} reads no stream: nothing to compare")
        self.topic: Topic = topic
        self.service = service
        self.codec = codec
        self.metrics = metrics
        self.batch_size = max(1, batch_size)
        self.block_ms = block_ms
        self.pace_s = max(0, pace_ms) / 1000
        """The least time between the starts of two reads of a caught-up reader."""
        self.reclaim_idle_ms = reclaim_idle_ms
        self.partitions = list(partitions) if partitions is not None else list(range(keys.partitions))
        policy = retry if retry is not None else RetryPolicy()
        group = comparator_group(keys, service)
        self.readers = {
            p: GroupIO(
                redis,
                stream=keys.stream(topic, p),
                group=group,
                consumer=instance,
                retry=policy,
                group_start=group_start,
            )
            for p in self.partitions
        }
        self.compared = 0
        """Entries decoded on both paths so far (also in ``cdb_shadow_compared_total``)."""
        codec.on_compare = None  # counted per batch by _report instead
        self._reported = 0  # codec.compared[topic] as last told to metrics
        self._reported_fields: Counter[str] = Counter()  # and its mismatches per field
        self._reported_later: Counter[str] = Counter()  # and its later versions per version
        self._ahead: dict[int, asyncio.Future[list[Entry]]] = {}  # partition -> next batch, asked for
        self._history_left: dict[int, bool] = {}  # partition -> own pending history not read to its end

    async def ensure_groups(self) -> None:
        """Create the comparator's group on every partition stream it reads (idempotent)."""
        for io in self.readers.values():
            await io.ensure_group()

    def compare(self, entries: Sequence[Entry]) -> int:
        """Decode each entry on both paths (the codec counts and logs the differences)."""
        decode, topic, n = self.codec.from_fields, self.topic, 0
        for raw_id, fields in entries:
            if not fields:
                continue  # deleted or trimmed while pending: nothing left to compare
            try:
                decode(topic, fields, entry_id=raw_id)
            except ContractError:
                pass  # the primary refuses it: the service dead-letters it; the codec counted any mismatch
            except Exception as exc:  # a primary codec bug: log it, never stop comparing
                _log.error("comparator.decode_crash", topic=topic.value, entry=raw_id, error=repr(exc))
            n += 1
        self.compared += n
        self._report()
        return n

    def _report(self) -> None:
        """Tell ``metrics`` what the codec counted since the last call (one call per batch)."""
        codec, topic = self.codec, self.topic
        compared = codec.compared[topic] - self._reported
        if not compared:
            return
        self._reported += compared
        fields = _grown(codec.mismatches, self._reported_fields, topic)
        later = _grown(codec.later, self._reported_later, topic)
        self.metrics.count_shadow(topic, fields, later, compared=compared)

    async def poll_once(self, partition: int, *, own_first: bool = False, reclaim: bool = False) -> int:
        """One round on one partition: own pending (after a start), due reclaims, one new batch."""
        io, handled = self.readers[partition], 0
        batches: list[list[Entry]] = []
        ahead = self._ahead.pop(partition, None)
        if own_first:
            if ahead is not None:
                # Whatever the read asked ahead delivered is pending for this instance: the
                # history read below holds it, so it is compared once, from there.
                with contextlib.suppress(Exception):
                    await ahead
                ahead = None
            own = await io.read_own_pending(self.batch_size)
            self._history_left[partition] = len(own) >= self.batch_size
            batches.append(own)
        if reclaim:
            batches.append((await io.reclaim(self.reclaim_idle_ms, self.batch_size))[0])
        batches = [b for b in batches if b]
        if ahead is not None:
            batches.append(await ahead)
        else:
            block = self.block_ms if not batches and self.block_ms > 0 else None
            batches.append(await io.read_new(self.batch_size, block))
        if len(batches[-1]) >= self.batch_size and not own_first:
            # More is waiting: ask for it now, so Redis prepares the reply while this batch is
            # compared (delivered entries stay pending until acknowledged, as any read's).
            self._ahead[partition] = asyncio.ensure_future(io.read_new(self.batch_size, None))
            await asyncio.sleep(0)  # let the read go out before the comparing starts
        for entries in batches:
            if entries:
                handled += self.compare(entries)
                await io.ack([raw_id for raw_id, _ in entries])
        return handled

    async def backlog(self) -> int:
        """Entries not yet compared (undelivered + pending), summed over the partitions read."""
        lag = pending = 0
        for io in self.readers.values():
            undelivered, waiting = await io.backlog()
            lag, pending = lag + undelivered, pending + waiting
        self.metrics.set_backlog(self.topic, lag=lag, pending=pending)
        return lag + pending

    async def run(self, stop: asyncio.Event) -> None:
        """Compare until ``stop`` is set; rides out Redis outages (logs, backs off, resumes)."""
        await self.ensure_groups()
        tasks = [asyncio.create_task(self._run_partition(p, stop)) for p in self.partitions]
        tasks.append(asyncio.create_task(self._report_backlog(stop)))
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            await self._finish_ahead()

    async def _finish_ahead(self) -> None:
        """Compare and acknowledge the batches asked for ahead, so a clean stop leaves none of
        them pending (on an error they stay pending: re-read at the next start, or reclaimed)."""
        for partition, ahead in list(self._ahead.items()):
            del self._ahead[partition]
            with contextlib.suppress(asyncio.CancelledError, Exception):
                entries = await ahead
                if entries:
                    self.compare(entries)
                    await self.readers[partition].ack([raw_id for raw_id, _ in entries])

    async def _run_partition(self, partition: int, stop: asyncio.Event) -> None:
        own, pause, next_reclaim = True, 0.0, 0.0
        while not stop.is_set():
            try:
                now = time.monotonic()
                due = now >= next_reclaim
                if due:
                    next_reclaim = now + max(self.reclaim_idle_ms / 2000, 0.01)
                handled = await self.poll_once(partition, own_first=own, reclaim=due)
                own = own and self._history_left[partition]  # own history re-read until it runs dry
                pause = 0.0
                rest = self.pace_s - (time.monotonic() - now)
                if 0 < handled < self.batch_size and rest > 0 and partition not in self._ahead:
                    # Caught up: let entries gather for one larger batch instead of a wake each.
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), timeout=rest)
            except TransportError as exc:
                own, pause = True, min(max(pause * 2, 0.1), 5.0)
                _log.error("comparator.redis_down", topic=self.topic.value, error=str(exc), pause_s=pause)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=pause)

    async def _report_backlog(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(TransportError):
                await self.backlog()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=_BACKLOG_EVERY_S)


def _grown(counts: Mapping[tuple[Topic, str], int], reported: Counter[str], topic: Topic) -> list[str]:
    """Each of ``topic``'s keys in ``counts``, repeated as often as its count grew since
    ``reported`` (updated to the counts now)."""
    grown: list[str] = []
    for (of, key), count in counts.items():
        new = count - reported[key] if of is topic else 0
        if new:
            grown += [key] * new
            reported[key] = count
    return grown
