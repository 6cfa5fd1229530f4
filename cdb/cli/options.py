"""Options shared by the commands that read a running pipeline: where its Redis is.

``--redis-url`` (env ``REDIS_URL``) and ``--prefix`` (env ``KEY_PREFIX``) name the
same Redis and key space the services use, so an operator's shell with the
services' environment needs no options at all. ``--redis-mode``,
``--redis-sentinels`` and ``--redis-sentinel-master`` (env ``REDIS_MODE``, ...) reach
a Redis Cluster or a Sentinel-watched primary exactly as the services do
(:mod:`core.redis.modes`; the mode is detected when not given).
"""

from __future__ import annotations

from typing import Annotated

import redis
import redis.asyncio as aioredis
import typer

from core.errors import TransportError
from core.redis import connect_async, connect_sync
from core.redis.connection import open_target, open_target_sync
from core.redis.modes import AsyncClient, RedisTarget, SyncClient
from core.settings import check_redis_url, redact_url

__all__ = [
    "DEFAULT_REDIS_URL",
    "AsJson",
    "Prefix",
    "RedisModeOption",
    "RedisUrl",
    "SentinelMaster",
    "Sentinels",
    "cli_target",
    "open_async",
    "open_async_target",
    "open_sync",
    "open_sync_target",
    "unreachable",
]

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
"""Where docker-compose publishes the pipeline's Redis on the host."""

_TIMEOUT_S = 5.0

RedisUrl = Annotated[
    str,
    typer.Option("--redis-url", envvar="REDIS_URL", help="Redis of the pipeline (env REDIS_URL)."),
]
Prefix = Annotated[
    str,
    typer.Option("--prefix", envvar="KEY_PREFIX", help="Key prefix of the pipeline (env KEY_PREFIX)."),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON for scripts instead of tables.")]
RedisModeOption = Annotated[
    str,
    typer.Option(
        "--redis-mode",
        envvar="REDIS_MODE",
        help="standalone, cluster or sentinel (env REDIS_MODE); empty: detected from the server.",
    ),
]
Sentinels = Annotated[
    str,
    typer.Option(
        "--redis-sentinels",
        envvar="REDIS_SENTINELS",
        help="Sentinels h:p,h:p (env REDIS_SENTINELS).",
    ),
]
SentinelMaster = Annotated[
    str,
    typer.Option(
        "--redis-sentinel-master",
        envvar="REDIS_SENTINEL_MASTER",
        help="Master name the Sentinels monitor (env REDIS_SENTINEL_MASTER); empty: the only one.",
    ),
]


def open_async(url: str) -> aioredis.Redis:
    """An asyncio client of ``url`` that gives up after a few seconds instead of hanging."""
    return connect_async(
        url or DEFAULT_REDIS_URL, socket_timeout=_TIMEOUT_S, socket_connect_timeout=_TIMEOUT_S
    )


def open_sync(url: str) -> redis.Redis:
    """A blocking client of ``url`` that gives up after a few seconds instead of hanging."""
    return connect_sync(
        url or DEFAULT_REDIS_URL, socket_timeout=_TIMEOUT_S, socket_connect_timeout=_TIMEOUT_S
    )


def unreachable(url: str, exc: BaseException) -> TransportError:
    """The error to exit with when the pipeline's Redis does not answer (password redacted)."""
    return TransportError(f"Redis at {redact_url(url or DEFAULT_REDIS_URL)} does not answer: {exc}")


def cli_target(url: str, mode: str = "", sentinels: str = "", master: str = "") -> RedisTarget:
    """The Redis the command options name (``ConfigError`` for an unknown ``--redis-mode`` or a
    URL that does not parse)."""
    check_redis_url(url, "REDIS_URL (--redis-url)")
    default = DEFAULT_REDIS_URL if not (url or sentinels) else url
    return RedisTarget.of(default, mode, sentinels, master)


async def open_async_target(target: RedisTarget) -> AsyncClient:
    """A connected asyncio client of ``target`` that gives up after a few seconds; ``ConfigError``
    if the server contradicts ``--redis-mode``, :func:`unreachable`'s error if it does not answer."""
    try:
        return await open_target(target, socket_timeout=_TIMEOUT_S, socket_connect_timeout=_TIMEOUT_S)
    except (redis.RedisError, OSError) as exc:
        raise unreachable(target.url, exc) from exc


def open_sync_target(target: RedisTarget) -> SyncClient:
    """:func:`open_async_target` with a blocking client."""
    try:
        client = open_target_sync(target, socket_timeout=_TIMEOUT_S, socket_connect_timeout=_TIMEOUT_S)
        client.ping()
    except (redis.RedisError, OSError) as exc:
        raise unreachable(target.url, exc) from exc
    return client
