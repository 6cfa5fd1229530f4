"""Options shared by the commands that read a running pipeline: where its Redis is.

``--redis-url`` (env ``REDIS_URL``) and ``--prefix`` (env ``KEY_PREFIX``) name the
same Redis and key space the services use, so an operator's shell with the
services' environment needs no options at all.
"""

from __future__ import annotations

from typing import Annotated

import redis
import redis.asyncio as aioredis
import typer

from core.errors import TransportError
from core.redis import connect_async, connect_sync
from core.settings import redact_url

__all__ = [
    "DEFAULT_REDIS_URL",
    "AsJson",
    "Prefix",
    "RedisUrl",
    "open_async",
    "open_sync",
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
