"""Opening the Redis connection a service runs on: a real server, or embedded fakeredis."""

from __future__ import annotations

import redis.asyncio as aioredis

from core.redis import connect_async

__all__ = ["connect"]


async def connect(url: str | None) -> aioredis.Redis:
    """A client for ``url``; with no URL an in-process fakeredis (for ``cdb run`` only)."""
    if not url:
        import fakeredis

        return fakeredis.FakeAsyncRedis()
    client = connect_async(url)  # the transport's own backoff, not redis-py's retries on top
    await client.ping()
    return client
