"""The whole pipeline in one process: ws replays trades, signal, risk and execution consume.

Used by ``cdb run`` (the main job) and by the mixed-version matrix. Each service gets
its own settings, so any mix of paths and profiles can run side by side.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from redis.exceptions import RedisError

from core.codec import build_codec
from core.redis import Publisher
from core.redis.consumer_io import group_backlog
from core.redis.modes import AsyncClient
from core.settings import ServiceSettings
from core.topics import CodecPath, KeySpace, ServiceName, Topic
from core.versions.codec import VersionedCodec
from services.execution.paper import VenueParams
from services.execution.service import ExecutionService
from services.execution.store import COLUMNS, ResultStore
from services.pipeline_control import CONSUMERS, CodecFactory, PipelineHook, PipelineRun
from services.risk.limits import RiskLimits
from services.risk.service import RiskService
from services.runtime import ConsumingService, ServiceContext
from services.signal.service import SignalService
from services.signal.strategy import SignalParams
from services.ws.service import Progress, WsService
from services.ws.trades import Trade

__all__ = [
    "PipelineHook",
    "PipelineResult",
    "PipelineRun",
    "ServiceReport",
    "read_order_results",
    "read_stream",
    "run_pipeline",
    "service_backlog",
    "wait_quiescent",
]


@dataclass
class ServiceReport:
    """What one service did in a run."""

    service: str
    path: str
    profile: str | None
    counts: dict[str, Any] = field(default_factory=dict)


@dataclass
class PipelineResult:
    """Everything a run published, stored and dead-lettered."""

    services: dict[str, ServiceReport]
    stream_lengths: dict[str, int]
    dead_letters: dict[str, int]
    order_results: list[dict[str, Any]]
    stored_rows: list[dict[str, Any]]
    trades: int
    seconds: float
    quiescent: bool

    def count(self, service: ServiceName, name: str) -> int:
        """A counter of one service (0 when absent)."""
        return int(self.services[service.value].counts.get(name, 0))


async def service_backlog(redis: AsyncClient, keys: KeySpace, service: ServiceName) -> int:
    """What ``service``'s group has not finished, summed over its input's partitions."""
    topic = service.consumes
    assert topic is not None
    return sum([await group_backlog(redis, stream, keys.group(service)) for stream in keys.streams(topic)])


async def wait_quiescent(
    redis: AsyncClient,
    keys: KeySpace,
    *,
    timeout_s: float = 120.0,
    settle_s: float = 0.05,
    failure: Callable[[], BaseException | None] | None = None,
) -> bool:
    """Wait until every consumer group has nothing left (seen twice in a row); False on timeout.
    A Redis that does not answer for a moment (a restart, a fail-over) counts as not idle.
    ``failure``: what a consumer ended with, if one did; raised at once (it would never drain)."""
    deadline = time.monotonic() + timeout_s
    calm = 0
    while time.monotonic() < deadline:
        error = failure() if failure is not None else None
        if error is not None:
            raise error
        backlog = 0
        try:
            for service in CONSUMERS:
                backlog += await service_backlog(redis, keys, service)
        except (RedisError, OSError):
            backlog = -1
        calm = calm + 1 if backlog == 0 else 0
        if calm >= 2:
            return True
        await asyncio.sleep(settle_s)
    return False


def _service_factory(
    store: ResultStore, environ: Mapping[str, str] | None
) -> Callable[[ServiceName, ServiceContext], ConsumingService]:
    from services.config import load_config

    def make(name: ServiceName, ctx: ServiceContext) -> ConsumingService:
        if name is ServiceName.SIGNAL:
            return SignalService(ctx, load_config(SignalParams, environ))
        if name is ServiceName.RISK:
            return RiskService(ctx, load_config(RiskLimits, environ))
        if name is ServiceName.EXECUTION:
            return ExecutionService(ctx, store, load_config(VenueParams, environ))
        raise ValueError(f"{name.value} does not consume a stream")

    return make


def _context(
    name: ServiceName, settings: ServiceSettings, redis: AsyncClient, codec_factory: CodecFactory | None
) -> ServiceContext:
    ctx = ServiceContext.create(name, settings, redis)
    if codec_factory is not None:
        # An injected codec (e.g. a candidate legacy class under test): the publisher
        # must encode with it too, so both are replaced together.
        ctx.codec = codec_factory(name, settings)
        ctx.publisher = Publisher.from_settings(
            redis, settings, codec=ctx.codec, service=name, metrics=ctx.metrics
        )
    return ctx


async def run_pipeline(
    redis: AsyncClient,
    settings: Mapping[ServiceName, ServiceSettings],
    trades: Sequence[Trade],
    store: ResultStore,
    *,
    environ: Mapping[str, str] | None = None,
    progress: Progress | None = None,
    timeout_s: float = 120.0,
    consumer_options: dict[str, Any] | None = None,
    hooks: Sequence[PipelineHook] = (),
    codec_factory: CodecFactory | None = None,
    ws_batch: int = 500,
    instances: Mapping[ServiceName, int] | None = None,
) -> PipelineResult:
    """Run the four services on ``trades`` until every stage is idle; report what happened.

    ``hooks`` are called before the consumers start, after each batch of ``ws_batch``
    trades and before the drain (fault injection, see :mod:`services.pipeline_control`);
    ``codec_factory`` replaces :func:`core.codec.codec_for` for every service.
    ``instances``: how many instances a consuming service runs (default 1); the further
    ones are named ``<INSTANCE>-2``, ``-3``... and share the partitions through leases.
    """
    started = time.monotonic()
    ws_settings = settings[ServiceName.WS]
    keys = KeySpace(ws_settings.key_prefix, ws_settings.topic_partitions)
    ctxs = {name: _context(name, settings[name], redis, codec_factory) for name in ServiceName}
    make = _service_factory(store, environ)
    run = PipelineRun(
        redis=redis,
        keys=keys,
        ctxs=ctxs,
        store=store,
        services={name: make(name, ctxs[name]) for name in CONSUMERS},
        make_service=make,
        consumer_options=consumer_options,
    )
    try:
        for hook in hooks:
            await hook.on_start(run)
        for name in CONSUMERS:
            if name not in run.held:
                run.start(name)
        for name, count in (instances or {}).items():
            for i in range(2, count + 1):
                own = settings[name].model_copy(update={"instance": f"{settings[name].instance}-{i}"})
                run.start_instance(_context(name, own, redis, codec_factory))
        await _publish(run, WsService(ctxs[ServiceName.WS], batch_size=ws_batch), trades, hooks, progress)
        for hook in hooks:
            await hook.before_drain(run)
        if progress:
            progress("draining", 0, 1)
        quiescent = await wait_quiescent(redis, keys, timeout_s=timeout_s, failure=run.failure)
    finally:
        await run.stop_all()
    result = await _collect(redis, keys, ctxs, store, len(trades), extra=list(run.extra.values()))
    result.seconds = time.monotonic() - started
    result.quiescent = quiescent
    return result


async def _publish(
    run: PipelineRun,
    ws: WsService,
    trades: Sequence[Trade],
    hooks: Sequence[PipelineHook],
    progress: Progress | None,
) -> None:
    for start in range(0, len(trades), ws.batch_size):
        await ws.publish_trades(trades[start : start + ws.batch_size])
        done = min(start + ws.batch_size, len(trades))
        if progress:
            progress("publishing", done, len(trades))
        for hook in hooks:
            await hook.after_batch(run, done, len(trades))


async def read_stream(redis: AsyncClient, keys: KeySpace, topic: Topic) -> list[tuple[bytes, Any]]:
    """Every entry of ``topic``: its one stream, or all its partitions merged in entry-id order
    (each symbol's entries keep their order: a symbol lives in one partition)."""
    entries: list[tuple[bytes, Any]] = []
    for stream in keys.streams(topic):
        reply: Any = await redis.xrange(stream)
        entries += list(reply)
    if keys.partitions > 1:
        entries.sort(key=lambda e: tuple(int(x) for x in e[0].split(b"-")))
    return entries


async def read_order_results(redis: AsyncClient, keys: KeySpace) -> list[dict[str, Any]]:
    """Business fields of every order result on the stream, in order (either path's shape)."""
    # The most tolerant reader installed (lenient while the migration is, else strict), reading
    # any declared version as v1.0: reads either path's output.
    reader = VersionedCodec(build_codec(CodecPath.PYDANTIC))
    out = []
    for entry_id, fields in await read_stream(redis, keys, Topic.ORDER_RESULTS):
        message = reader.from_fields(Topic.ORDER_RESULTS, fields, entry_id=entry_id).message
        values = reader.as_dict(Topic.ORDER_RESULTS, message)
        out.append({c: values[c] for c in COLUMNS})
    return out


async def _collect(
    redis: AsyncClient,
    keys: KeySpace,
    ctxs: Mapping[ServiceName, ServiceContext],
    store: ResultStore,
    trades: int,
    *,
    extra: Sequence[ServiceContext] = (),
) -> PipelineResult:
    reports = {}
    for name, ctx in ctxs.items():
        state = ctx.live_state()
        counts = dict(state.counts)
        for other in (c for c in extra if c.service is name):
            for key, value in other.live_state().counts.items():
                if isinstance(value, int | float) and isinstance(counts.get(key, 0), int | float):
                    counts[key] = counts.get(key, 0) + value  # instances of a service add up
        reports[name.value] = ServiceReport(name.value, state.path, state.profile, counts)
    lengths = {t.value: sum([int(await redis.xlen(s)) for s in keys.streams(t)]) for t in Topic}
    dlq = {t.value: int(await redis.xlen(keys.dlq(t))) for t in Topic}
    return PipelineResult(
        services=reports,
        stream_lengths=lengths,
        dead_letters=dlq,
        order_results=await read_order_results(redis, keys),
        stored_rows=await store.rows(),
        trades=trades,
        seconds=0.0,
        quiescent=False,
    )
