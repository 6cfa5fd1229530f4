"""``cdb health SERVICE``: the container healthcheck (docker-compose runs it inside the container).

Healthy (exit 0) when a fresh live state of SERVICE exists for this container's
instance (running, not stopped): by default an instance named after this host (``<hostname>`` or
``<hostname>-<pid>``, the default ``INSTANCE``), or exactly ``--instance`` (env
``INSTANCE``) when set. Otherwise exit 1 with a one-line reason. A service that
reports is alive and knows its path; one that stopped reporting is not.

It runs with the service's own Redis user, which may GET its status keys but not
SCAN (docs/security.md). So it first GETs the key of ``INSTANCE``, or of
``<hostname>-<pid>`` for each ``cdb service SERVICE`` process it finds in this container
(``/proc``; PID 1 without ``init: true``, a child of tini with it), and only then lists
``<hostname>*`` keys with SCAN where that is permitted.
"""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path
from typing import Annotated

import redis
import typer
from redis.exceptions import NoPermissionError

from cdb.cli.options import (
    DEFAULT_REDIS_OPTIONS,
    RedisOptions,
    open_async_target,
    unreachable,
    with_redis_options,
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
    failed = [s for s in candidates if s.failed]
    if not fresh and failed:
        return False, f"unhealthy: {service.value} {failed[0].instance} failed: {failed[0].error or '?'}"
    if not fresh and all(s.stopped for s in candidates):
        return False, f"unhealthy: {service.value} {candidates[0].instance} stopped"
    if not fresh:
        age = min(at_ms - s.reported_ms for s in candidates) / 1000.0
        return False, f"unhealthy: {service.value} {candidates[0].instance} last reported {age:.0f}s ago"
    s = fresh[0]
    profile = f"/{s.profile}" if s.profile else ""
    return True, f"healthy: {service.value} {s.instance} on {s.path}{profile}, up {s.uptime_s(at_ms):.0f}s"


def local_service_pids(service: ServiceName, proc: Path = Path("/proc")) -> list[int]:
    """PIDs of the ``cdb service SERVICE`` processes visible here (this container), lowest first."""
    pids: list[int] = []
    for entry in proc.iterdir() if proc.is_dir() else ():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue  # gone meanwhile, or not ours to read
        words = [a.decode(errors="replace") for a in argv if a]
        if any(w.endswith("cdb") for w in words[:2]) and words[-2:] == ["service", service.value]:
            pids.append(int(entry.name))
    return sorted(pids)


async def _states(
    target: RedisTarget, keys: KeySpace, service: ServiceName, hostname: str, instance: str | None
) -> list[LiveState]:
    client = await open_async_target(target)
    try:
        pids = local_service_pids(service) or [1]
        names = [instance] if instance else [f"{hostname}-{pid}" for pid in pids]
        found_direct = [raw for name in names if (raw := await client.get(keys.status(service, name)))]
        if found_direct or instance:
            return [LiveState.from_json(raw) for raw in found_direct]
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


@with_redis_options
def health(
    service: Annotated[ServiceName, typer.Argument(help="ws, signal, risk or execution")],
    instance: Annotated[
        str | None,
        typer.Option(envvar="INSTANCE", help="Exact instance name (env INSTANCE); default: this hostname."),
    ] = None,
    redis: RedisOptions = DEFAULT_REDIS_OPTIONS,
) -> None:
    """Exit 0 when SERVICE reports fresh live state from this host, else 1 with the reason."""
    hostname, instance = socket.gethostname(), instance or None
    try:
        states = asyncio.run(_states(redis.target(), redis.keys(), service, hostname, instance))
    except CdbError as exc:
        typer.echo(f"unhealthy: {exc}")
        raise SystemExit(1) from None
    ok, reason = verdict(states, service, hostname, instance, now_ms())
    typer.echo(reason)
    raise SystemExit(0 if ok else 1)
