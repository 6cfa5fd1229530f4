"""Opening Redis clients the transport works well with, and naming them safely in logs.

redis-py retries a failed command by itself (ten times by default in 8.x). The
transport has its own bounded backoff (:class:`~core.redis.retry.RetryPolicy`), so
two nested retry loops would multiply the time a service hangs on a dead server.
The clients made here let redis-py reconnect once at once (a pooled connection
gone stale after a server restart) and leave the backoff to the transport.
"""

from __future__ import annotations

from typing import Any

import redis
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.retry import Retry

__all__ = ["connect_async", "connect_sync", "describe"]


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


def describe(client: redis.Redis | aioredis.Redis) -> str:
    """``redis://host:port/db`` of ``client``, for logs: never the user name or password."""
    kwargs = client.connection_pool.connection_kwargs
    if "path" in kwargs:
        return f"unix://{kwargs['path']}?db={kwargs.get('db', 0)}"
    return f"redis://{kwargs.get('host', '?')}:{kwargs.get('port', '?')}/{kwargs.get('db', 0)}"
