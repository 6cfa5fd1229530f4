"""Options shared by the commands that read a running pipeline: where its Redis is.

``--redis-url`` (env ``REDIS_URL``) and ``--prefix`` (env ``KEY_PREFIX``) name the
same Redis and key space the services use, so an operator's shell with the
services' environment needs no options at all. ``--redis-mode``,
``--redis-sentinels`` and ``--redis-sentinel-master`` (env ``REDIS_MODE``, ...) reach
a Redis Cluster or a Sentinel-watched primary exactly as the services do
(:mod:`core.redis.modes`; the mode is detected when not given).

The five are declared once: a command takes ``redis: RedisOptions`` and
:func:`with_redis_options` gives it the options. Their values are read and validated by
:class:`~core.settings.ServiceSettings` (its own source and rules, as a service reads them).
"""

from __future__ import annotations

import functools
import inspect
import os
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import redis
import redis.asyncio as aioredis
import typer

from core.errors import ConfigError, TransportError
from core.redis import connect_async, connect_sync
from core.redis.connection import open_target, open_target_sync
from core.redis.modes import AsyncClient, RedisTarget, SyncClient
from core.settings import ServiceSettings, check_redis_url, redact_url
from core.topics import KeySpace

__all__ = [
    "DEFAULT_REDIS_OPTIONS",
    "DEFAULT_REDIS_URL",
    "AsJson",
    "Prefix",
    "RedisModeOption",
    "RedisOptions",
    "RedisUrl",
    "SentinelMaster",
    "Sentinels",
    "cli_target",
    "open_async",
    "open_async_target",
    "open_sync",
    "open_sync_target",
    "unreachable",
    "with_redis_options",
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


_OPTION_FIELDS = {  # command parameter -> ServiceSettings field (the variable is its upper case)
    "redis_url": "redis_url",
    "prefix": "key_prefix",
    "redis_mode": "redis_mode",
    "sentinels": "redis_sentinels",
    "sentinel_master": "redis_sentinel_master",
}
_OPTION_TYPES: dict[str, Any] = {
    "redis_url": Annotated[
        str,
        typer.Option(
            "--redis-url",
            help=f"Redis of the pipeline (env REDIS_URL; default {DEFAULT_REDIS_URL}).",
            show_default=False,
        ),
    ],
    "prefix": Annotated[str, typer.Option("--prefix", help="Key prefix of the pipeline (env KEY_PREFIX).")],
    "redis_mode": Annotated[
        str,
        typer.Option(
            "--redis-mode",
            help="standalone, cluster or sentinel (env REDIS_MODE); empty: detected from the server.",
        ),
    ],
    "sentinels": Annotated[
        str, typer.Option("--redis-sentinels", help="Sentinels h:p,h:p (env REDIS_SENTINELS).")
    ],
    "sentinel_master": Annotated[
        str,
        typer.Option(
            "--redis-sentinel-master",
            help="Master name the Sentinels monitor (env REDIS_SENTINEL_MASTER); empty: the only one.",
        ),
    ],
}


class RedisOptions:
    """Where the pipeline's Redis is: the command's options over the services' own variables
    (REDIS_URL, KEY_PREFIX, REDIS_MODE, REDIS_SENTINELS, REDIS_SENTINEL_MASTER), read and
    validated by :class:`ServiceSettings`; without either, docker-compose's Redis on the host."""

    def __init__(self, **given: str) -> None:
        self._given = {name: value for name, value in given.items() if value}
        self._settings: ServiceSettings | None = None

    def settings(self) -> ServiceSettings:
        """The connection settings; :class:`~core.errors.ConfigError` names a bad variable/option."""
        if self._settings is None:
            variables = {name.upper() for name in _OPTION_FIELDS.values()}
            environ = {k: v for k, v in os.environ.items() if k in variables}
            overrides = {_OPTION_FIELDS[name]: value for name, value in self._given.items()}
            try:
                self._settings = ServiceSettings.load(environ=environ, overrides=overrides)
            except ConfigError as exc:
                raise _with_option(exc) from None
        return self._settings

    def target(self) -> RedisTarget:
        """The Redis to reach (any mode)."""
        s = self.settings()
        return cli_target(s.redis_url or "", s.redis_mode or "", s.redis_sentinels, s.redis_sentinel_master)

    @property
    def prefix(self) -> str:
        """The pipeline's key prefix."""
        return self.settings().key_prefix

    def keys(self) -> KeySpace:
        """The pipeline's key space (one partition; callers read the recorded count)."""
        return KeySpace(self.prefix)


_FLAGS = {
    "redis_url": "--redis-url",
    "prefix": "--prefix",
    "redis_mode": "--redis-mode",
    "sentinels": "--redis-sentinels",
    "sentinel_master": "--redis-sentinel-master",
}


def _with_option(exc: ConfigError) -> ConfigError:
    """``exc`` naming the command option beside its variable (``REDIS_URL (--redis-url)``), as
    a command names the options it reads itself; the rest of the message is unchanged."""
    for param, field in _OPTION_FIELDS.items():
        if exc.variable == field.upper():
            named = f"{exc.variable} ({_FLAGS[param]})"
            exc.args = (str(exc).replace(f"{exc.variable}=", f"{named}=", 1),)
            exc.variable = named
            break
    return exc


DEFAULT_REDIS_OPTIONS = RedisOptions()
"""The placeholder default of a command's ``redis`` parameter (:func:`with_redis_options` replaces it)."""

R = TypeVar("R")


def with_redis_options(command: Callable[..., R]) -> Callable[..., R]:
    """``command`` with the five shared Redis options in place of its ``redis: RedisOptions``
    parameter (the last one), so each command declares them once, by this decorator."""
    signature = inspect.signature(command, eval_str=True)
    params = [p for p in signature.parameters.values() if p.name != "redis"]
    if len(params) == len(signature.parameters):
        raise TypeError(f"{command.__name__} has no 'redis: RedisOptions' parameter")
    params += [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default="", annotation=annotation)
        for name, annotation in _OPTION_TYPES.items()
    ]

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> R:
        given = {name: kwargs.pop(name, "") for name in _OPTION_FIELDS}
        return command(*args, redis=RedisOptions(**given), **kwargs)

    wrapper.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in params}
    return wrapper
