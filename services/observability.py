"""What a service process adds to be watched: ``/metrics`` and the path its env file asks for.

``METRICS_PORT`` (see :mod:`core.metrics_http`) is read before anything else starts,
so a bad value stops the service at once, naming the variable. ``FLAGS_FILE`` (or
``cdb service --env-file``) names the env file the operator edits to flip this
service; it is read again every few seconds and the path it asks for is exported as
``cdb_desired_path_info`` next to ``cdb_instance_info`` (the running path), so an
edit without a recreate shows in Prometheus (alert ``CdbFlagNotApplied``), in
``cdb status`` and on the dashboard.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

from core.errors import CdbError
from core.metrics_http import MetricsTarget, serve_metrics
from core.settings import ServiceSettings
from core.topics import ServiceName
from services.runtime import ServiceContext

__all__ = ["FLAGS_FILE_VAR", "desired_path", "flags_file", "observed"]

FLAGS_FILE_VAR = "FLAGS_FILE"
"""The variable naming the env file a service's flags are edited in."""

_RECHECK_S = 2.0


def flags_file(env_file: str | os.PathLike[str] | None = None) -> Path | None:
    """The env file to watch: ``env_file`` if given, else ``FLAGS_FILE``, else none."""
    chosen = env_file or os.environ.get(FLAGS_FILE_VAR, "").strip()
    return Path(chosen) if chosen else None


def desired_path(service: ServiceName, env_file: Path) -> tuple[str, str | None]:
    """The path (and profile) ``env_file`` asks ``service`` for; ``("unknown", None)`` when it
    cannot be read or holds a value the service would refuse."""
    try:
        settings = ServiceSettings.load(service, environ={}, env_file=env_file)
    except CdbError:
        return "unknown", None
    if not settings.use_pydantic_contracts:
        return "legacy", None
    return "pydantic", settings.contract_profile.value


@contextlib.asynccontextmanager
async def observed(ctx: ServiceContext, target: MetricsTarget, env_file: Path | None) -> AsyncIterator[None]:
    """Serve ``ctx``'s metrics on ``target`` and watch ``env_file`` while the block runs."""
    endpoint = serve_metrics(target, ctx.metrics.registry)
    tasks = [asyncio.create_task(_beat(ctx))]
    if env_file is not None:
        tasks.append(asyncio.create_task(_watch(ctx, env_file)))
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if endpoint is not None:
            endpoint.close()


async def _beat(ctx: ServiceContext) -> None:
    # On the event loop, unlike the metrics server's thread: a hung loop stops the beat.
    while True:
        ctx.metrics.ops.beat(time.time())
        await asyncio.sleep(_RECHECK_S)


async def _watch(ctx: ServiceContext, env_file: Path) -> None:
    while True:
        path, profile = await asyncio.to_thread(desired_path, ctx.service, env_file)
        ctx.metrics.ops.set_desired(path, profile)
        await asyncio.sleep(_RECHECK_S)
