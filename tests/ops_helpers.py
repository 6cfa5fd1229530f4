"""Shared pieces of the operator-tooling tests: invoking ``cdb`` and running real services.

A service here is the real thing (``run_consuming_service`` with a ``ServiceContext``
on the real Redis), reporting its live state every 0.25 s so tests stay fast.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from typer.testing import CliRunner, Result

from cdb.cli import app
from core.settings import ServiceSettings
from core.status import LiveState, StatusReporter, read_live_states
from core.topics import KeySpace, ServiceName
from services.risk.service import RiskService
from services.runtime import ConsumingService, ServiceContext, run_consuming_service
from services.signal.service import SignalService

__all__ = [
    "CDB",
    "CLEAN_ENV",
    "ROOT",
    "cdb",
    "cdb_json",
    "live_service",
    "report_state",
    "reporting",
    "service_settings",
    "wait_state",
]

ROOT = Path(__file__).resolve().parents[1]
CDB = Path(sys.executable).parent / "cdb"
STATUS_INTERVAL_S = 0.25  # stale after 0.75 s: enough slack for a loaded CI machine

_VARS = [name.upper() for name in ServiceSettings.model_fields if name != "service"]
CLEAN_ENV: dict[str, str | None] = {
    var: None for var in _VARS + [f"{s.value.upper()}_{v}" for s in ServiceName for v in _VARS]
}
"""Unset every setting variable: the test process's environment must not leak into ``cdb``."""


def cdb(*args: str, **env: str) -> Result:
    """Run ``cdb ARGS`` in-process (typer's CliRunner) with a clean environment."""
    return CliRunner().invoke(app, list(args), env={**CLEAN_ENV, "COLUMNS": "250", **env})


def cdb_json(*args: str, expect: int = 0, **env: str) -> Any:
    """Run ``cdb ARGS --json`` and parse its output; asserts the exit code."""
    result = cdb(*args, "--json", **env)
    assert result.exit_code == expect, result.output
    return json.loads(result.stdout)


def service_settings(service: ServiceName, keys: KeySpace, instance: str, **flags: Any) -> ServiceSettings:
    """Settings of one test instance under the ``keys`` prefix (no environment read)."""
    overrides = {"key_prefix": keys.prefix, "instance": instance, "consumer_block_ms": 20, **flags}
    return ServiceSettings.load(service, environ={}, overrides=overrides)


def _service_object(ctx: ServiceContext) -> ConsumingService:
    if ctx.service is ServiceName.SIGNAL:
        return SignalService(ctx)
    if ctx.service is ServiceName.RISK:
        return RiskService(ctx)
    raise ValueError(f"live_service runs signal or risk, not {ctx.service.value}")


async def report_state(redis: aioredis.Redis, settings: ServiceSettings) -> ServiceContext:
    """Report ``settings``' instance once, as a running service would (fresh for 3 x 2 s)."""
    assert settings.service is not None
    ctx = ServiceContext.create(settings.service, settings, redis)
    await StatusReporter(redis, ctx.keys, ctx.live_state).report_once()
    return ctx


async def wait_state(
    redis: aioredis.Redis, keys: KeySpace, service: ServiceName, instance: str, **expected: Any
) -> LiveState:
    """Wait until ``instance`` of ``service`` reports a live state with the ``expected`` attributes."""
    async with asyncio.timeout(10):
        while True:
            for state in await read_live_states(redis, keys):
                mine = state.service == service.value and state.instance == instance
                if mine and all(getattr(state, k) == v for k, v in expected.items()):
                    return state
            await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def reporting(redis: aioredis.Redis, settings: ServiceSettings) -> AsyncIterator[ServiceContext]:
    """An instance that only reports its live state (every 0.25 s) until the block ends."""
    assert settings.service is not None
    ctx = ServiceContext.create(settings.service, settings, redis)
    stop = asyncio.Event()
    reporter = StatusReporter(redis, ctx.keys, ctx.live_state, interval_s=STATUS_INTERVAL_S)
    await reporter.report_once()
    task = asyncio.create_task(reporter.run(stop))
    try:
        yield ctx
    finally:
        stop.set()
        await task


@contextlib.asynccontextmanager
async def live_service(redis: aioredis.Redis, settings: ServiceSettings) -> AsyncIterator[ServiceContext]:
    """Run a consuming service (signal or risk) until the block ends; yields its context
    once it has reported its live state."""
    assert settings.service is not None
    ctx = ServiceContext.create(settings.service, settings, redis)
    stop = asyncio.Event()
    task = asyncio.create_task(
        run_consuming_service(_service_object(ctx), ctx, stop, status_interval_s=STATUS_INTERVAL_S)
    )
    try:
        await wait_state(redis, ctx.keys, settings.service, settings.instance)
        yield ctx
    finally:
        stop.set()
        await task
