"""Running the out-of-band shadow comparator as its own process (``cdb shadow SERVICE``).

It takes the checked service's flags (its env file: the path and profile it compares
from), always compares every message, reports its live state under that service with
role ``comparator`` (``cdb status``, ``cdb cutover check``) and serves the same
``cdb_shadow_*`` metrics on METRICS_PORT. See :mod:`migration.comparator`.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Sequence
from pathlib import Path

from core.errors import ConfigError
from core.logging import configure_logging, get_logger
from core.metrics_http import metrics_target
from core.redis.modes import AsyncClient
from core.redis.topology import read_partitions
from core.settings import ServiceSettings
from core.settings_sources import EnvLayers
from core.status import LiveState, StatusReporter
from core.topics import ServiceName
from migration.comparator import ShadowComparator
from migration.shadow import ShadowCodec
from services.observability import observed
from services.redis_connect import connect
from services.runtime import ServiceContext

__all__ = ["comparator_context", "comparator_state", "run_comparator"]


def _on_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # not the main thread (tests)
            loop.add_signal_handler(sig, stop.set)


def comparator_context(
    ctx_settings: ServiceSettings, service: ServiceName, redis: AsyncClient
) -> ServiceContext:
    """A context like the service's, but shadow on (every message) and named ``shadow-<instance>``."""
    settings = ctx_settings.model_copy(
        update={
            "contract_shadow": True,
            "contract_shadow_sample": 1.0,
            "instance": f"shadow-{ctx_settings.instance}"[:128],
        }
    )
    return ServiceContext.create(service, settings, redis)


def comparator_state(ctx: ServiceContext, comparator: ShadowComparator) -> LiveState:
    """The comparator's live state: the service's document, role ``comparator``, its partitions."""
    state = ctx.live_state()
    state.role = "comparator"
    state.owned = list(comparator.partitions)
    return state


async def run_comparator(
    service: ServiceName,
    stop: asyncio.Event | None = None,
    *,
    env_file: Path | None = None,
    partitions: Sequence[int] | None = None,
    from_now: bool = False,
    status_interval_s: float = 2.0,
) -> int:
    """Compare ``service``'s input until SIGTERM/SIGINT (or ``stop``); returns entries compared.

    The partition count is the running pipeline's (``cdb topology``), else TOPIC_PARTITIONS.
    """
    configure_logging()
    settings = ServiceSettings.load(service, env_file=env_file)
    if service.consumes is None:
        raise ConfigError("SERVICE", service.value, ["signal", "risk", "execution"], "ws reads no stream")
    if not settings.redis_url and not settings.redis_sentinels:
        raise ConfigError("REDIS_URL", "", ["redis://host:6379/0"], "the comparator needs a real Redis")
    target = metrics_target(EnvLayers(env_file=env_file))  # the environment over the env file
    stop = stop or asyncio.Event()
    _on_signals(stop)
    redis = await connect(settings.redis_url, settings)
    try:
        ctx = comparator_context(settings, service, redis)
        keys = ctx.keys.with_partitions(await read_partitions(redis, ctx.keys) or ctx.keys.partitions)
        bad = [p for p in partitions or [] if not 0 <= p < keys.partitions]
        if bad:
            accepted = [f"0..{keys.partitions - 1}"]
            raise ConfigError("--partition", bad[0], accepted, "the pipeline's partitions")
        assert isinstance(ctx.codec, ShadowCodec)
        comparator = ShadowComparator(
            redis,
            service=service,
            codec=ctx.codec,
            keys=keys,
            instance=ctx.settings.instance,
            metrics=ctx.metrics,
            partitions=partitions or None,
            batch_size=settings.consumer_batch,
            block_ms=settings.consumer_block_ms,
            reclaim_idle_ms=settings.reclaim_idle_ms,
            group_start="$" if from_now else "0",
        )
        reporter = StatusReporter(
            redis, ctx.keys, lambda: comparator_state(ctx, comparator), interval_s=status_interval_s
        )
        async with observed(ctx, target, None):
            status_task = asyncio.create_task(reporter.run(stop))
            try:
                await comparator.run(stop)
            finally:
                stop.set()
                with contextlib.suppress(Exception):
                    await status_task
                    await reporter.withdraw(comparator_state(ctx, comparator))
        return comparator.compared
    finally:
        await redis.aclose()
        get_logger(service=service.value).info("comparator.stop", instance=settings.instance)
