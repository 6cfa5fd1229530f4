"""``cdb health SERVICE``: the container healthcheck (docker-compose runs it inside the container).

Healthy (exit 0) when a fresh live state of SERVICE exists for this container's
instance (running, not stopped): by default an instance named after this host (``<hostname>`` or
``<hostname>-<pid>``, the default ``INSTANCE``), or exactly ``--instance`` (env
``INSTANCE``) when set. Otherwise exit 1 with a one-line reason. A service that
reports is alive and knows its path; one that stopped reporting is not.

It runs with the service's own Redis user, which may GET its status keys but not
SCAN (docs/security.md). So it first GETs the key of ``INSTANCE``, or of
``<hostname>-1`` (the service is PID 1 of its container: ``ENTRYPOINT ["cdb"]``),
and only then lists ``<hostname>*`` keys with SCAN where that is permitted.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Annotated

import redis
import typer
from redis.exceptions import NoPermissionError

from core.cli.options import (
    DEFAULT_REDIS_URL,
    Prefix,
    RedisModeOption,
    RedisUrl,
    SentinelMaster,
    Sentinels,
    cli_target,
    open_async_target,
    unreachable,
)
from core.errors import CdbError
from core.redis.modes import RedisTarget
from core.status import LiveState
from core.topics import KeySpace, ServiceName
from core.utils.clock import now_ms

__all__ = ["health", "verdict"]


def _mine(state: LiveState, hostname: str, instance: str | None) -> bool:
    if instance:
        return state.instance == instance
    return state.instance == hostname or state.instance.startswith(f"{hostname}-")


def verdict(
    states: list[LiveState], service: ServiceName, hostname: str, instance: str | None, at_ms: int
) -> tuple[bool, str]:
    """(healthy, one-line reason) for ``service`` on this host from the reported ``states``."""
    who = f"instance {instance!r}" if instance else f"an instance of host {hostname!r}"
    candidates = [s for s in states if s.service == service.value and _mine(s, hostname, instance)]
    if not candidates:
        return False, f"unhealthy: no live state of {service.value} for {who}"
    fresh = [s for s in candidates if s.is_live(at_ms)]
    if not fresh and all(s.stopped for s in candidates):
        return False, f"unhealthy: {service.value} {candidates[0].instance} stopped"
    if not fresh:
        age = min(at_ms - s.reported_ms for s in candidates) / 1000.0
        return False, f"unhealthy: {service.value} {candidates[0].instance} last reported {age:.0f}s ago"
    s = fresh[0]
    profile = f"/{s.profile}" if s.profile else ""
    return True, f"healthy: {service.value} {s.instance} on {s.path}{profile}, up {s.uptime_s(at_ms):.0f}s"


async def _states(
    target: RedisTarget, keys: KeySpace, service: ServiceName, hostname: str, instance: str | None
) -> list[LiveState]:
    client = await open_async_target(target)
    try:
        raw = await client.get(keys.status(service, instance or f"{hostname}-1"))
        if raw is not None:
            return [LiveState.from_json(raw)]
        if instance:
            return []
        pattern = keys.status(service, f"{hostname}*")
        try:
            names = [k async for k in client.scan_iter(match=pattern, count=500)]
        except NoPermissionError:
            return []  # a service user may not SCAN: the GET above was the check
        found = [await client.get(name) for name in names]
        return [LiveState.from_json(r) for r in found if r is not None]
    except (redis.RedisError, OSError, ValueError) as exc:
        raise unreachable(target.url, exc) from exc
    finally:
        await client.aclose()


def health(
    service: Annotated[ServiceName, typer.Argument(help="ws, signal, risk or execution")],
    redis_url: RedisUrl = DEFAULT_REDIS_URL,
    prefix: Prefix = "",
    instance: Annotated[
        str | None,
        typer.Option(envvar="INSTANCE", help="Exact instance name (env INSTANCE); default: this hostname."),
    ] = None,
    redis_mode: RedisModeOption = "",
    sentinels: Sentinels = "",
    sentinel_master: SentinelMaster = "",
) -> None:
    """Exit 0 when SERVICE reports fresh live state from this host, else 1 with the reason."""
    hostname, instance = socket.gethostname(), instance or None
    try:
        target = cli_target(redis_url, redis_mode, sentinels, sentinel_master)
        states = asyncio.run(_states(target, KeySpace(prefix), service, hostname, instance))
    except CdbError as exc:
        typer.echo(f"unhealthy: {exc}")
        raise SystemExit(1) from None
    ok, reason = verdict(states, service, hostname, instance, now_ms())
    typer.echo(reason)
    raise SystemExit(0 if ok else 1)
