"""Running one service as its own process, the way a container does (``cdb service NAME``)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.errors import ConfigError
from core.logging import configure_logging, get_logger
from core.metrics_http import metrics_target
from core.redis.instance_claim import InstanceClaim, claimed
from core.redis.topology import ensure_topology
from core.settings import ServiceSettings
from core.status import StatusReporter
from core.topics import ServiceName
from services.config import load_config
from services.execution.paper import VenueParams
from services.execution.service import ExecutionService
from services.execution.store import open_store
from services.observability import flags_file, observed
from services.redis_connect import connect
from services.risk.limits import RiskLimits
from services.risk.service import RiskService
from services.runtime import ConsumingService, ServiceContext, run_consuming_service
from services.signal.service import SignalService
from services.signal.strategy import SignalParams
from services.ws.outbox import Outbox, Overflow, first_done
from services.ws.replay import BUNDLED_TRADES
from services.ws.service import WsService

__all__ = ["WsSourceSettings", "run_service"]


class WsSourceSettings(BaseSettings):
    """Where ws takes trades from (env: WS_SOURCE, WS_REPLAY_FILE, WS_REPLAY_PACE, WS_MEXC_URL, ...)."""

    model_config = SettingsConfigDict(env_prefix="WS_", frozen=True, extra="ignore")

    source: Literal["replay", "mexc"] = Field(default="replay", description="replay or mexc")
    replay_file: Path = Field(default=BUNDLED_TRADES, description="a trades CSV file")
    replay_pace: float = Field(default=1.0, ge=0, description="0 = full speed, 1 = recorded pace (>= 0)")
    mexc_url: str = Field(default="wss://wbs-api.mexc.com/ws", description="MEXC spot v3 WebSocket URL")
    symbols: str = Field(default="BTC/USDT,ETH/USDT", description="comma-separated pairs, e.g. BTC/USDT")
    buffer_size: int = Field(
        default=10_000,
        gt=0,
        le=10_000_000,
        description="trades held while Redis is down; then replay waits, live sheds the oldest (1..10000000)",
    )

    @field_validator("replay_file")
    @classmethod
    def _readable_when_replaying(cls, value: Path, info: ValidationInfo) -> Path:
        """A replay source needs its file at start (one clear error, not a traceback later)."""
        if info.data.get("source") == "replay" and not value.is_file():
            raise ValueError(f"no such file: {value}")
        return value


def _install_signal_handlers(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # not the main thread (tests)
            loop.add_signal_handler(sig, stop.set)


async def run_service(
    service: ServiceName, stop: asyncio.Event | None = None, *, env_file: Path | None = None
) -> None:
    """Run ``service`` from the environment (and ``env_file``, which the environment overrides)
    until SIGTERM/SIGINT (or ``stop``); serves /metrics on METRICS_PORT when it is set."""
    configure_logging()
    settings = ServiceSettings.load(service, env_file=env_file)
    if not settings.redis_url and not settings.redis_sentinels:
        raise ConfigError("REDIS_URL", "", ["redis://host:6379/0"], "a service needs a real Redis")
    target = metrics_target()  # a bad METRICS_PORT stops the service before it connects
    stop = stop or asyncio.Event()
    _install_signal_handlers(stop)
    redis = await connect(settings.redis_url, settings)
    ctx = ServiceContext.create(service, settings, redis)
    try:
        # One live process per INSTANCE name (core.redis.instance_claim); a crashed one's
        # claim lapses within its TTL, so a restart under the same name waits that long.
        claim = InstanceClaim(redis, ctx.keys, service, settings.instance, _claim_ttl_ms(settings))
        async with (
            claimed(claim, stop, wait_s=claim.ttl_ms / 1000),
            observed(ctx, target, flags_file(env_file)),
        ):
            await _run(service, ctx, stop)
    finally:
        await redis.aclose()
        get_logger(service=service.value).info("service.stop", instance=settings.instance)


def _claim_ttl_ms(settings: ServiceSettings) -> int:
    # As long as a lease: a frozen process loses its name no later than its partitions.
    return max(3_000, settings.partition_lease_ms)


async def _run(service: ServiceName, ctx: ServiceContext, stop: asyncio.Event) -> None:
    if service is ServiceName.WS:
        await _run_ws(ctx, stop)
    elif service is ServiceName.EXECUTION:
        store = open_store(ctx.settings.database_url, sqlite_path=Path("var") / "execution.sqlite3")
        try:
            await run_consuming_service(ExecutionService(ctx, store, load_config(VenueParams)), ctx, stop)
        finally:
            await store.close()
    else:
        # Signal and risk keep per-symbol state: one business object per partition.
        await run_consuming_service(
            _consumer(service, ctx), ctx, stop, factory=lambda own: _consumer(service, own)
        )


def _consumer(service: ServiceName, ctx: ServiceContext) -> ConsumingService:
    if service is ServiceName.SIGNAL:
        return SignalService(ctx, load_config(SignalParams))
    return RiskService(ctx, load_config(RiskLimits))


async def _run_ws(ctx: ServiceContext, stop: asyncio.Event) -> None:
    source = load_config(WsSourceSettings)
    ws = WsService(ctx)
    # A replay can wait for Redis (backpressure); a live feed cannot, so it sheds (counted).
    overflow = Overflow.WAIT if source.source == "replay" else Overflow.SHED_OLDEST
    outbox = Outbox(ws, capacity=source.buffer_size, overflow=overflow)
    await ensure_topology(ctx.redis, ctx.keys)  # ws routes by the same partition count as the consumers
    reporter = StatusReporter(ctx.redis, ctx.keys, ctx.live_state)
    status_task = asyncio.create_task(reporter.run(stop))
    sender = asyncio.create_task(outbox.run(stop))
    try:
        if source.source == "replay":
            from services.ws.replay import load_trades, replay

            await replay(load_trades(source.replay_file), outbox.put, pace=source.replay_pace, stop=stop)
            await first_done(outbox.drain(), stop.wait())
            await stop.wait()  # stay visible in status after the replay ends
        else:
            from services.ws.mexc_v3_client import MexcV3Client

            symbols = [s.strip() for s in source.symbols.split(",") if s.strip()]
            client = MexcV3Client(source.mexc_url, symbols, outbox.put, on_bad_frame=ws.on_bad_frame)
            ctx.metrics.ops.watch_source("mexc", lambda: _mexc_stats(client))
            await client.run(stop)
    finally:
        stop.set()
        await sender  # publishes what is queued, or counts it as shed when Redis is gone
        await status_task
        with contextlib.suppress(Exception):
            await reporter.withdraw(ctx.live_state())


def _mexc_stats(client: Any) -> dict[str, Any]:
    # The live client's own statistics, read at each scrape and status report.
    stats = client.stats
    return {
        "reconnects": stats.reconnects,
        "refused_symbols": len(client.refused),
        "bad_frames_by_reason": dict(stats.bad_frames_by_reason),
    }
