"""Running one service as its own process, the way a container does (``cdb service NAME``)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from core.errors import ConfigError, TransportError
from core.logging import configure_logging, get_logger
from core.redis.connection import describe
from core.redis.instance_claim import InstanceClaim, claimed
from core.redis.topology import ensure_topology
from core.settings import ServiceSettings
from core.status import StatusReporter, failure_text
from core.topics import ServiceName
from core.utils.tasks import cancel_firmly
from core.versions.live import check_producer
from services.config import StartConfig, load_start_config
from services.execution.paper import VenueParams
from services.execution.service import ExecutionService
from services.execution.store import open_store
from services.observability import flags_file, observed
from services.redis_connect import connect
from services.risk.limits import RiskLimits
from services.risk.service import RiskService
from services.runtime import ConsumingService, ServiceContext, run_consuming_service, service_gc
from services.signal.service import SignalService
from services.signal.strategy import SignalParams
from services.ws.outbox import Outbox, Overflow, first_done
from services.ws.position import SourcePositions
from services.ws.service import WsService
from services.ws.sources import WsSourceSettings, make_source, run_resumable

__all__ = ["WsSourceSettings", "run_service"]  # WsSourceSettings: re-exported from services.ws.sources


_FAILED_REPORT_S = 2.0  # at most this long to write a failed report before the error goes up


def _install_signal_handlers(stop: asyncio.Event, service: ServiceName) -> None:
    loop = asyncio.get_running_loop()

    def stopping(sig: signal.Signals) -> None:
        get_logger(service=service.value).info("service.stopping", signal=sig.name)
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # not the main thread (tests)
            loop.add_signal_handler(sig, stopping, sig)


async def run_service(
    service: ServiceName,
    stop: asyncio.Event | None = None,
    *,
    from_start: bool = False,
    env_file: Path | None = None,
) -> None:
    """Run ``service`` from the environment (and ``env_file``, which the environment overrides)
    until SIGTERM/SIGINT (or ``stop``); serves /metrics on METRICS_PORT when it is set.

    Every setting it reads comes from there by one rule (:func:`services.config.load_start_config`,
    which ``cdb flags`` checks a file with): the flags, its own ``WS_*`` / ``SIGNAL_*`` / ``RISK_*``
    / ``EXECUTION_*`` settings and METRICS_PORT / METRICS_ADDR; a bad one stops it before it
    connects, with the message ``cdb flags`` gives.

    On a stop it finishes (or abandons, unacknowledged) the batch in hand, reports itself
    ``stopped`` in its live state and returns; a stop still running after STOP_TIMEOUT_MS (Redis
    not answering) is cut short with :class:`TransportError` (``cdb service`` exits 2). When it
    stops on an error instead (a version gate or a setting refuses it, a saved position is
    unreadable, ...) once it holds its instance name, it reports itself ``failed`` with the
    error's message, so ``cdb status`` tells "refused, here is why" from a crash, then raises
    the error.

    ``from_start`` (ws; or WS_FROM_START): ignore the saved source position and begin at the
    source's first trade."""
    configure_logging()
    config = load_start_config(service, env_file=env_file)
    settings = config.settings
    # Only once every setting is checked: cdb flags accepts an empty REDIS_URL (cdb run's
    # fakeredis), so checked later the service reports the same first bad value it does.
    if not settings.redis_url and not settings.redis_sentinels:
        raise ConfigError("REDIS_URL", "", ["redis://host:6379/0"], "a service needs a real Redis")
    stop = stop or asyncio.Event()
    _install_signal_handlers(stop, service)
    redis = await connect(settings.redis_url, settings)
    ctx = ServiceContext.create(service, settings, redis)
    try:
        work = _serve(service, ctx, config, stop, env_file=env_file, from_start=from_start)
        await _stop_within(work, stop, ctx)
    finally:
        await redis.aclose()
        get_logger(service=service.value).info("service.stop", instance=settings.instance)


async def _serve(
    service: ServiceName,
    ctx: ServiceContext,
    config: StartConfig,
    stop: asyncio.Event,
    *,
    env_file: Path | None,
    from_start: bool,
) -> None:
    # One live process per INSTANCE name (core.redis.instance_claim); a crashed one's
    # claim lapses within its TTL, so a restart under the same name waits that long.
    claim = InstanceClaim(ctx.redis, ctx.keys, service, ctx.settings.instance, _claim_ttl_ms(ctx.settings))
    async with (
        claimed(claim, stop, wait_s=claim.ttl_ms / 1000),
        observed(ctx, config.metrics, flags_file(env_file)),
    ):
        try:
            with service_gc():  # start-up's objects out of the collector's passes, rarer passes
                await _run(service, ctx, config, stop, from_start=from_start)
        except Exception as exc:
            await _report_failed(ctx, exc)
            raise


async def _stop_within(work: Coroutine[Any, Any, None], stop: asyncio.Event, ctx: ServiceContext) -> None:
    """Run ``work`` until it ends; once ``stop`` is set, give it STOP_TIMEOUT_MS to finish.

    A clean stop needs Redis (the last ack, the position, the "stopped" report). A Redis that
    stops answering without closing the connection (a hung server, a network blackhole) makes
    each of those calls wait out socket timeouts and retries: minutes, so the container's grace
    period ran out and it was killed. Past the timeout the stop is cut short instead: the work is
    cancelled (what it did not acknowledge stays pending for the next owner; ws's unsaved
    position repeats trades, which signal counts once) and :class:`TransportError` says so."""
    task = asyncio.ensure_future(work)
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait((task, stopping), return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        await cancel_firmly(task)
        raise
    finally:
        stopping.cancel()
    if not task.done():
        timeout_s = ctx.settings.stop_timeout_ms / 1000
        await asyncio.wait((task,), timeout=timeout_s)
        if not task.done():
            await cancel_firmly(task)
            get_logger(service=ctx.service.value).error(
                "service.stop_cut_short", instance=ctx.settings.instance, timeout_s=timeout_s
            )
            raise TransportError(
                f"{ctx.service.value} ({ctx.settings.instance}) did not stop within STOP_TIMEOUT_MS="
                f"{ctx.settings.stop_timeout_ms} (is Redis at {describe(ctx.redis)} answering?); "
                "its unacknowledged entries stay pending for the next owner"
            )
    await task


async def _report_failed(ctx: ServiceContext, error: Exception) -> None:
    # The one place a service stops on an error: its last report says so, and why (a refusal
    # at start included, before any "running" report). Never instead of the error itself.
    get_logger(service=ctx.service.value).error(
        "service.failed", instance=ctx.settings.instance, error=failure_text(error)
    )
    with contextlib.suppress(Exception):  # Redis away (maybe the error itself): do not hang on it
        async with asyncio.timeout(_FAILED_REPORT_S):
            await StatusReporter(ctx.redis, ctx.keys, ctx.live_state).report_failed(error)


def _claim_ttl_ms(settings: ServiceSettings) -> int:
    # As long as a lease: a frozen process loses its name no later than its partitions.
    return max(3_000, settings.partition_lease_ms)


async def _run(
    service: ServiceName, ctx: ServiceContext, config: StartConfig, stop: asyncio.Event, *, from_start: bool
) -> None:
    if service is ServiceName.WS:
        await _run_ws(ctx, config.own_as(WsSourceSettings), stop, from_start=from_start)
    elif service is ServiceName.EXECUTION:
        store = open_store(ctx.settings.database_url, sqlite_path=Path("var") / "execution.sqlite3")
        try:
            venue = config.own_as(VenueParams)
            await run_consuming_service(ExecutionService(ctx, store, venue), ctx, stop)
        finally:
            await store.close()
    else:
        # Signal and risk keep per-symbol state: one business object per partition (the
        # settings are frozen, so the partitions share the one copy read at start).
        await run_consuming_service(
            _consumer(service, ctx, config), ctx, stop, factory=lambda own: _consumer(service, own, config)
        )


def _consumer(service: ServiceName, ctx: ServiceContext, config: StartConfig) -> ConsumingService:
    if service is ServiceName.SIGNAL:
        return SignalService(ctx, config.own_as(SignalParams))
    return RiskService(ctx, config.own_as(RiskLimits))


async def _run_ws(
    ctx: ServiceContext, source: WsSourceSettings, stop: asyncio.Event, *, from_start: bool = False
) -> None:
    ws = WsService(ctx)
    await ensure_topology(ctx.redis, ctx.keys)  # ws routes by the same partition count as the consumers
    await check_producer(ctx.redis, ctx.keys, ctx.service, ctx.settings.produce_version(ctx.service.produces))
    reporter = StatusReporter(ctx.redis, ctx.keys, ctx.live_state)
    status_task = asyncio.create_task(reporter.run(stop))
    sender: asyncio.Task[None] | None = None
    clean = False
    try:
        if source.source == "mexc":
            from services.ws.mexc_v3_client import MexcV3Client

            # A live feed cannot wait for Redis: it sheds the oldest held trade (counted).
            outbox = Outbox(ws, capacity=source.buffer_size, overflow=Overflow.SHED_OLDEST)
            sender = asyncio.create_task(outbox.run(stop))
            symbols = [s.strip() for s in source.symbols.split(",") if s.strip()]
            client = MexcV3Client(source.mexc_url, symbols, outbox.put, on_bad_frame=ws.on_bad_frame)
            ctx.metrics.ops.watch_source("mexc", lambda: _mexc_stats(client))
            await client.run(stop)
        else:
            # A file or the synthetic market can wait (backpressure) and resume where it was.
            resumable = make_source(source)
            positions = SourcePositions(ctx.redis, ctx.keys, resumable.identity)

            async def confirmed(mark: object) -> None:
                if await positions.save(resumable.encode(mark)):
                    ctx.extra_counts["source_position"] = resumable.number(mark)  # shown in status

            outbox = Outbox(ws, capacity=source.buffer_size, overflow=Overflow.WAIT, on_confirmed=confirmed)
            sender = asyncio.create_task(outbox.run(stop))
            await run_resumable(
                resumable, positions, outbox.put, stop, from_start=from_start or source.from_start
            )
            await first_done(outbox.drain(), stop.wait())
            await stop.wait()  # stay visible in status after the replay ends
        clean = True
    finally:
        stop.set()
        if sender is not None:
            await sender  # publishes what is queued (and saves its position), or counts it as shed
        await status_task
        if clean:  # after a failure, run_service reports it failed
            with contextlib.suppress(Exception):
                await reporter.report_stopped()


def _mexc_stats(client: Any) -> dict[str, Any]:
    # The live client's own statistics, read at each scrape and status report.
    stats = client.stats
    return {
        "reconnects": stats.reconnects,
        "refused_symbols": len(client.refused),
        "bad_frames_by_reason": dict(stats.bad_frames_by_reason),
    }
