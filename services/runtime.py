"""What every service instance shares: its codec, publisher, metrics, logger and live state.

A service's business logic never sees the flag; it gets a :class:`ServiceContext`
whose codec was chosen once, in :func:`core.codec.codec_for`, from its settings.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any, Protocol

from core.codec import Codec, Decoded, codec_for
from core.ignored import IgnoredLog
from core.logging import get_logger
from core.metrics import IgnoreReason, ServiceMetrics
from core.redis import DeadLetters, Publisher
from core.redis.group_cleanup import GroupJanitor
from core.redis.modes import AsyncClient
from core.redis.topology import ensure_lease_setting, ensure_topology
from core.settings import ServiceSettings
from core.status import LiveState, StatusReporter
from core.topics import KeySpace, ServiceName, Topic
from core.utils.clock import now_ms
from core.versions.live import check_consumer, check_producer, seen_by, versions_of

if TYPE_CHECKING:
    from services.partitions import PartitionedConsumer

__all__ = [
    "GC_THRESHOLD",
    "ConsumingService",
    "ServiceContext",
    "package_version",
    "run_consuming_service",
    "service_gc",
]

GC_THRESHOLD = (10_000, 10, 10)
"""The cyclic collector's thresholds while a service runs (Python's default: 700, 10, 10).

A batch holds a few objects per entry alive at once (the reply's field maps, the decoded
messages), so with 700 the collector ran a young pass every few hundred entries, each
walking the batch again: ~4.5 % of signal's and ~3 % of ws's instructions per message
(callgrind, ``bench.hot_path``). With 10,000 it runs ~15x less often; garbage in reference
cycles waits for a later pass, a bounded delay: peak RSS over 200,000 messages stayed within
about 1 MB of the defaults' (signal 99.7 vs 99.0 MB, ws 67.3 vs 66.1 MB)."""


@contextlib.contextmanager
def service_gc() -> Iterator[None]:
    """Run the block with the collector set for a long-running service: everything alive at
    entry (modules, contract schemas, settings: start-up's objects, which live as long as the
    process) is moved out of the collector's passes (``gc.freeze``, after a collection so no
    start-up garbage is kept), and young passes are rarer (:data:`GC_THRESHOLD`). Objects made
    inside the block are collected as usual. Both are undone on exit (tests run services in
    one process with everything else), the freeze only if nothing was frozen before (one
    ``gc.unfreeze`` thaws all: an enclosing freeze then thaws them with its own).

    Why the freeze matters for latency, not only CPU: a full pass walked all ~75,000 start-up
    objects, 25-35 ms in an idle service and 55-70 ms under load, with every message in flight
    waiting (signal made 27 of them in one 80-s benchmark run); frozen, one takes ~0.6 ms."""
    previous, frozen_before = gc.get_threshold(), gc.get_freeze_count()
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLD)
    try:
        yield
    finally:
        gc.set_threshold(*previous)
        if not frozen_before:
            gc.unfreeze()


def package_version() -> str:
    """The installed cdb-contracts version (``0+unknown`` when run from a bare checkout)."""
    try:
        return version("cdb-contracts")
    except PackageNotFoundError:
        return "0+unknown"


@dataclass
class ServiceContext:
    """Everything one service instance needs besides its business logic."""

    service: ServiceName
    settings: ServiceSettings
    codec: Codec
    keys: KeySpace
    redis: AsyncClient
    publisher: Publisher
    dead_letters: DeadLetters
    metrics: ServiceMetrics
    started_ms: int = field(default_factory=now_ms)
    extra_counts: dict[str, int] = field(default_factory=dict)
    owned: list[int] = field(default_factory=list)
    """The partitions this instance owns now (kept up to date by services.partitions)."""
    ignored_log: IgnoredLog | None = None
    """Counts and logs what the business logic drops on purpose (made from ``metrics``)."""

    def __post_init__(self) -> None:
        if self.ignored_log is None:
            self.ignored_log = IgnoredLog(self.metrics)

    @classmethod
    def create(cls, service: ServiceName, settings: ServiceSettings, redis: AsyncClient) -> ServiceContext:
        """A context whose codec, key space and metrics follow ``settings``."""
        metrics = ServiceMetrics(service.value)
        codec = codec_for(settings, on_shadow=metrics.count_shadow)  # shadow counts reach live status
        keys = KeySpace(settings.key_prefix, settings.topic_partitions)
        publisher = Publisher.from_settings(redis, settings, codec=codec, service=service, metrics=metrics)
        dead_letters = DeadLetters(redis, keys, max_payload_bytes=settings.dlq_payload_limit)
        ctx = cls(service, settings, codec, keys, redis, publisher, dead_letters, metrics)
        metrics.ops.describe_instance(
            settings.instance,
            path=codec.path.value,
            profile=codec.profile.value if codec.profile else None,
            shadow=settings.contract_shadow,
            partitions=keys.partitions,
            started_ms=ctx.started_ms,
            version=package_version(),
        )
        get_logger(service=service.value).info(
            "service.start",
            instance=settings.instance,
            path=codec.path.value,
            profile=codec.profile.value if codec.profile else None,
            shadow=settings.contract_shadow,
        )
        return ctx

    def count(self, name: str, by: int = 1) -> None:
        """Add to a business counter shown in live status (signals, rejections, ...)."""
        self.extra_counts[name] = self.extra_counts.get(name, 0) + by
        self.metrics.ops.count_event(name, by)  # the same count on /metrics (cdb_events_total)

    def ignore(self, topic: Topic, reason: IgnoreReason, **details: Any) -> None:
        """Count (``cdb_messages_ignored_total``) and log (rate-limited) one valid message of
        ``topic`` dropped on purpose; ``details`` identify it in the log line."""
        assert self.ignored_log is not None
        self.ignored_log.note(topic, reason, **details)

    def live_state(self) -> LiveState:
        """The document this instance reports to Redis."""
        counts: dict[str, Any] = dict(self.metrics.snapshot())
        counts.update(self.extra_counts)
        reads, writes = versions_of(self.service, self.codec)
        return LiveState(
            service=self.service.value,
            instance=self.settings.instance,
            path=self.codec.path.value,
            profile=self.codec.profile.value if self.codec.profile else None,
            shadow=self.settings.contract_shadow,
            version=package_version(),
            started_ms=self.started_ms,
            partitions=self.keys.partitions,
            owned=list(self.owned),
            counts=counts,
            reads=reads,
            writes=writes,
            versions_seen=seen_by(self.codec),
        )


def _in_process(redis: object) -> bool:
    return type(redis).__module__.startswith("fakeredis")


def _janitor(ctx: ServiceContext) -> GroupJanitor:
    topic = ctx.service.consumes
    assert topic is not None
    group, idle_ms = ctx.keys.group(ctx.service), ctx.settings.dead_consumer_idle_ms
    return GroupJanitor(ctx.redis, ctx.keys.streams(topic), group, ctx.settings.instance, idle_ms=idle_ms)


class ConsumingService(Protocol):
    """A service that reads one topic's stream (signal, risk, execution).

    It may also have ``async def before_ack(self) -> None``: awaited once per batch, after the
    batch's handlers and before its acknowledgement (raising leaves the whole batch pending;
    :class:`~core.errors.TransportError` makes the consumer back off and re-read it); and
    ``async def finish_batch(self, work) -> dict[str, BaseException]``: the batch step for the
    work its ``handle`` returned (``{entry id: work}``; ``{entry id: error}`` for the entries it
    could not finish), run before ``before_ack`` (:class:`core.redis.StreamConsumer`).
    """

    async def start(self) -> None:
        """Prepare (e.g. run database migrations) before the first message."""
        ...

    async def handle(self, decoded: Decoded, entry_id: str) -> object:
        """Act on one decoded message; raising leaves it pending for a retry. Returns ``None``,
        or work for the service's ``finish_batch`` step."""
        ...

    async def close(self) -> None:
        """Release resources."""
        ...


async def run_consuming_service(
    svc: ConsumingService,
    ctx: ServiceContext,
    stop: asyncio.Event,
    *,
    status_interval_s: float = 2.0,
    consumer_options: dict[str, Any] | None = None,
    factory: Callable[[ServiceContext], ConsumingService] | None = None,
) -> PartitionedConsumer:
    """Consume the service's input stream until ``stop`` is set, reporting live state meanwhile.

    Messages the service defers (:meth:`~core.redis.Publisher.defer`) are flushed once per
    batch, before that batch is acknowledged. The instance reads the partitions it holds a
    lease on (all of them when it runs alone; :mod:`services.partitions`); ``factory``
    gives each partition a fresh business object (else ``svc`` serves them all). Refuses
    to start (``ConfigError``) when TOPIC_PARTITIONS differs from the running pipeline's.
    """
    from services.partitions import PartitionedConsumer

    if ctx.service.consumes is None:
        raise ValueError(f"{ctx.service.value} does not consume a stream")
    tuning: dict[str, Any] = {
        "batch_size": ctx.settings.consumer_batch,
        "block_ms": ctx.settings.consumer_block_ms,
        "reclaim_idle_ms": ctx.settings.reclaim_idle_ms,
        "max_deliveries": ctx.settings.max_deliveries,
        # Each partition's consumer flushes its own publisher before its ack (at-least-once;
        # see Publisher.defer): outputs a handler deferred go out once per batch.
        **(consumer_options or {}),
    }
    await ensure_topology(ctx.redis, ctx.keys)
    await check_producer(ctx.redis, ctx.keys, ctx.service, ctx.settings.produce_version(ctx.service.produces))
    reads = versions_of(ctx.service, ctx.codec)[0][ctx.service.consumes.value]
    await check_consumer(ctx.redis, ctx.keys, ctx.service, reads)
    if not _in_process(ctx.redis):  # one process (embedded fakeredis): nobody to agree with
        await ensure_lease_setting(ctx.redis, ctx.keys, ctx.service, ctx.settings.partition_lease_ms)
    await svc.start()
    runner = PartitionedConsumer(svc, ctx, factory=factory, consumer_options=tuning)
    reporter = StatusReporter(ctx.redis, ctx.keys, ctx.live_state, interval_s=status_interval_s)
    status_task = asyncio.create_task(reporter.run(stop))
    janitor = _janitor(ctx)  # dead consumers leave the groups (core.redis.group_cleanup)
    janitor_task = asyncio.create_task(janitor.run(stop))
    clean = False
    try:
        await runner.run(stop)
        await janitor.leave()  # a clean stop: every batch acked, so its own consumer can go
        clean = True
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await janitor_task
        with contextlib.suppress(Exception):
            await status_task
            if clean:
                # The batch in hand is acknowledged (or left pending): say "stopped" now, so status
                # shows it at once (not "stale" later); the report expires after STOPPED_TTL_S.
                # After a failure the caller says why (cdb.launcher reports the instance failed).
                await reporter.report_stopped()
        await svc.close()
    return runner
