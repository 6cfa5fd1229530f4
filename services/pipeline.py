"""The whole pipeline in one process: ws replays trades, signal, risk and execution consume.

Used by ``cdb run`` (the main job) and by the mixed-version matrix. Each service gets
its own settings, so any mix of paths and profiles can run side by side.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis

from core.codec import build_codec
from core.settings import ServiceSettings
from core.topics import KeySpace, Path, Profile, ServiceName, Topic
from services.execution.paper import VenueParams
from services.execution.service import ExecutionService
from services.execution.store import COLUMNS, ResultStore
from services.risk.limits import RiskLimits
from services.risk.service import RiskService
from services.runtime import ConsumingService, ServiceContext, run_consuming_service
from services.signal.service import SignalService
from services.signal.strategy import SignalParams
from services.ws.service import WsService
from services.ws.trades import Trade

__all__ = ["PipelineResult", "ServiceReport", "group_backlog", "run_pipeline", "wait_quiescent"]

CONSUMERS = (ServiceName.SIGNAL, ServiceName.RISK, ServiceName.EXECUTION)

Progress = Callable[[str, int, int], None]
"""Called with (phase, done, total) while the pipeline runs."""


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


async def group_backlog(redis: aioredis.Redis, stream: str, group: str) -> int:
    """Entries of ``stream`` the group has not finished: undelivered (lag) plus pending."""
    try:
        groups = await redis.xinfo_groups(stream)
    except aioredis.ResponseError:
        return 0  # no stream yet: nothing to do
    for info in groups:
        name = info["name"].decode() if isinstance(info["name"], bytes) else info["name"]
        if name == group:
            lag = info.get("lag")
            if lag is None:  # unknown after trimming: compare ids instead
                last = (await redis.xinfo_stream(stream))["last-generated-id"]
                lag = 0 if info["last-delivered-id"] == last else 1
            return int(lag) + int(info["pending"])
    return await redis.xlen(stream)  # group not created yet: everything is waiting


async def wait_quiescent(
    redis: aioredis.Redis, keys: KeySpace, *, timeout_s: float = 120.0, settle_s: float = 0.05
) -> bool:
    """Wait until every consumer group has nothing left (seen twice in a row); False on timeout."""
    deadline = time.monotonic() + timeout_s
    calm = 0
    while time.monotonic() < deadline:
        backlog = 0
        for service in CONSUMERS:
            topic = service.consumes
            assert topic is not None
            backlog += await group_backlog(redis, keys.stream(topic), keys.group(service))
        calm = calm + 1 if backlog == 0 else 0
        if calm >= 2:
            return True
        await asyncio.sleep(settle_s)
    return False


def _service_objects(
    ctxs: Mapping[ServiceName, ServiceContext], store: ResultStore, environ: Mapping[str, str] | None
) -> dict[ServiceName, ConsumingService]:
    from services.config import load_config

    return {
        ServiceName.SIGNAL: SignalService(ctxs[ServiceName.SIGNAL], load_config(SignalParams, environ)),
        ServiceName.RISK: RiskService(ctxs[ServiceName.RISK], load_config(RiskLimits, environ)),
        ServiceName.EXECUTION: ExecutionService(
            ctxs[ServiceName.EXECUTION], store, load_config(VenueParams, environ)
        ),
    }


async def run_pipeline(
    redis: aioredis.Redis,
    settings: Mapping[ServiceName, ServiceSettings],
    trades: Sequence[Trade],
    store: ResultStore,
    *,
    environ: Mapping[str, str] | None = None,
    progress: Progress | None = None,
    timeout_s: float = 120.0,
    consumer_options: dict[str, Any] | None = None,
) -> PipelineResult:
    """Run the four services on ``trades`` until every stage is idle; report what happened."""
    started = time.monotonic()
    keys = KeySpace(settings[ServiceName.WS].key_prefix)
    ctxs = {name: ServiceContext.create(name, settings[name], redis) for name in ServiceName}
    services = _service_objects(ctxs, store, environ)
    stop = asyncio.Event()
    tasks = [
        asyncio.create_task(
            run_consuming_service(services[name], ctxs[name], stop, consumer_options=consumer_options),
            name=f"cdb-{name.value}",
        )
        for name in CONSUMERS
    ]
    ws = WsService(ctxs[ServiceName.WS])
    try:
        await ws.publish_trades(trades, progress=progress)
        if progress:
            progress("draining", 0, 1)
        quiescent = await wait_quiescent(redis, keys, timeout_s=timeout_s)
    finally:
        stop.set()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
    result = await _collect(redis, keys, ctxs, store, len(trades))
    result.seconds = time.monotonic() - started
    result.quiescent = quiescent
    return result


async def read_order_results(redis: aioredis.Redis, keys: KeySpace) -> list[dict[str, Any]]:
    """Business fields of every order result on the stream, in order (either path's shape)."""
    reader = build_codec(Path.PYDANTIC, Profile.LENIENT)
    out = []
    for _, fields in await redis.xrange(keys.stream(Topic.ORDER_RESULTS)):
        message = reader.from_fields(Topic.ORDER_RESULTS, fields).message
        values = reader.as_dict(Topic.ORDER_RESULTS, message)
        out.append({c: values[c] for c in COLUMNS})
    return out


async def _collect(
    redis: aioredis.Redis,
    keys: KeySpace,
    ctxs: Mapping[ServiceName, ServiceContext],
    store: ResultStore,
    trades: int,
) -> PipelineResult:
    reports = {}
    for name, ctx in ctxs.items():
        state = ctx.live_state()
        reports[name.value] = ServiceReport(name.value, state.path, state.profile, state.counts)
    lengths = {t.value: int(await redis.xlen(keys.stream(t))) for t in Topic}
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
