"""Opening Redis clients the transport works well with, and naming them safely in logs.

redis-py retries a failed command by itself (ten times by default in 8.x). The
transport has its own bounded backoff (:class:`~core.redis.retry.RetryPolicy`), so
two nested retry loops would multiply the time a service hangs on a dead server.
The clients made here let redis-py reconnect once at once (a pooled connection
gone stale after a server restart) and leave the backoff to the transport.

:func:`open_target` / :func:`open_target_sync` open the client a
:class:`~core.redis.modes.RedisTarget` needs: a plain client, redis-py's
``RedisCluster``, or the primary a Sentinel names (:mod:`core.redis.modes`).
"""

from __future__ import annotations

from typing import Any

import redis
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.asyncio.retry import Retry as AsyncRetry
from redis.asyncio.sentinel import Sentinel as AsyncSentinel
from redis.backoff import NoBackoff
from redis.cluster import RedisCluster as SyncRedisCluster
from redis.retry import Retry
from redis.sentinel import Sentinel as SyncSentinel

from core.errors import ConfigError
from core.redis.modes import (
    AsyncClient,
    RedisTarget,
    SentinelPrimary,
    SyncClient,
    SyncSentinelPrimary,
    choose_master,
    detect_mode,
    detect_mode_sync,
    masters_by_name,
    refuse,
)
from core.topics import RedisMode

__all__ = ["connect_async", "connect_sync", "describe", "open_target", "open_target_sync"]

_SOCKET_OPTIONS = ("socket_timeout", "socket_connect_timeout")


def connect_async(url: str, **options: Any) -> aioredis.Redis:
    """An asyncio client of ``url`` (not yet connected); ``options`` go to ``from_url``."""
    options.setdefault("retry", AsyncRetry(NoBackoff(), 1))
    options.setdefault("health_check_interval", 30)
    return aioredis.Redis.from_url(url, **options)


def connect_sync(url: str, **options: Any) -> redis.Redis:
    """A blocking client of ``url`` (not yet connected); ``options`` go to ``from_url``."""
    options.setdefault("retry", Retry(NoBackoff(), 1))
    options.setdefault("health_check_interval", 30)
    return redis.Redis.from_url(url, **options)


def _no_url() -> ConfigError:
    hint = "or REDIS_MODE=sentinel with REDIS_SENTINELS"
    return ConfigError("REDIS_URL", "", ["redis://host:6379/0"], hint)


def _socket(options: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in options.items() if k in _SOCKET_OPTIONS}


async def _resolve_mode(target: RedisTarget, options: dict[str, Any]) -> RedisMode:
    if target.mode is RedisMode.SENTINEL and target.sentinels:
        return RedisMode.SENTINEL  # REDIS_URL then only carries the primary's credentials
    if not target.url:
        if target.sentinels:
            return RedisMode.SENTINEL
        raise _no_url()
    found = await detect_mode(target.url, **_socket(options))
    if target.mode is not None and target.mode is not found:
        raise refuse(target, found)
    return found


async def open_target(target: RedisTarget, **options: Any) -> AsyncClient:
    """A connected asyncio client for ``target``, after checking its mode against the server.

    :class:`~core.errors.ConfigError` names ``REDIS_MODE`` when the server contradicts it,
    ``REDIS_SENTINEL_MASTER`` when the Sentinels do not monitor that name (or several,
    and none was named). Connection errors propagate as redis-py raises them.
    """
    mode = await _resolve_mode(target, options)
    if mode is RedisMode.CLUSTER:
        options.setdefault("health_check_interval", 30)
        cluster = AsyncRedisCluster.from_url(target.url, **options)
        try:
            await cluster.initialize()
        except BaseException:
            await cluster.aclose()
            raise
        return cluster
    if mode is RedisMode.SENTINEL:
        return await _open_sentinel(target, options)
    client = connect_async(target.url, **options)
    await client.ping()
    return client


async def _open_sentinel(target: RedisTarget, options: dict[str, Any]) -> AsyncClient:
    options.setdefault("retry", AsyncRetry(NoBackoff(), 1))
    sentinel = AsyncSentinel(  # type: ignore[no-untyped-call]  # redis-py leaves it untyped
        target.sentinel_addresses(), sentinel_kwargs=_socket(options), **target.master_kwargs(), **options
    )
    try:
        masters: dict[str, Any] = {}
        for node in sentinel.sentinels:
            try:
                masters = masters_by_name(await node.sentinel_masters())
                break
            except (redis.ConnectionError, redis.TimeoutError):
                continue
        else:
            raise redis.ConnectionError(f"no Sentinel answers at {target.shown()}")
        name = choose_master(target, masters)
        client: SentinelPrimary = sentinel.master_for(name, redis_class=SentinelPrimary)
        client.sentinel_manager = sentinel
        await client.ping()
    except BaseException:
        await sentinel.aclose()
        raise
    return client


def open_target_sync(target: RedisTarget, **options: Any) -> SyncClient:
    """:func:`open_target` with blocking clients (the ``cdb`` commands)."""
    if target.mode is RedisMode.SENTINEL and target.sentinels:
        mode = RedisMode.SENTINEL
    elif not target.url:
        if not target.sentinels:
            raise _no_url()
        mode = RedisMode.SENTINEL
    else:
        mode = detect_mode_sync(target.url, **_socket(options))
        if target.mode is not None and target.mode is not mode:
            raise refuse(target, mode)
    if mode is RedisMode.CLUSTER:
        return SyncRedisCluster.from_url(target.url, **options)
    if mode is RedisMode.SENTINEL:
        options.setdefault("retry", Retry(NoBackoff(), 1))
        sentinel = SyncSentinel(  # type: ignore[no-untyped-call]  # redis-py leaves it untyped
            target.sentinel_addresses(), sentinel_kwargs=_socket(options), **target.master_kwargs(), **options
        )
        masters: dict[str, Any] = {}
        for node in sentinel.sentinels:
            try:
                masters = masters_by_name(node.sentinel_masters())
                break
            except (redis.ConnectionError, redis.TimeoutError):
                continue
        name = choose_master(target, masters)
        primary: SyncSentinelPrimary = sentinel.master_for(  # type: ignore[no-untyped-call]
            name, redis_class=SyncSentinelPrimary
        )
        primary.sentinel_manager = sentinel
        return primary
    return connect_sync(target.url, **options)


def describe(client: Any) -> str:
    """``redis://host:port/db`` of ``client``, for logs: never the user name or password.

    A cluster client is named by its nodes, a Sentinel-managed primary by its master name.
    """
    if isinstance(client, AsyncRedisCluster | SyncRedisCluster):
        nodes = sorted(n.name for n in client.get_nodes())
        return f"redis-cluster://{','.join(nodes)}"
    pool = client.connection_pool
    if hasattr(pool, "service_name"):
        return f"redis-sentinel://{pool.service_name}"
    kwargs = pool.connection_kwargs
    if "path" in kwargs:
        return f"unix://{kwargs['path']}?db={kwargs.get('db', 0)}"
    return f"redis://{kwargs.get('host', '?')}:{kwargs.get('port', '?')}/{kwargs.get('db', 0)}"
