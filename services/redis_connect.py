"""Opening the Redis connection a service runs on: a real server (any mode), or embedded fakeredis."""

from __future__ import annotations

from core.redis.connection import open_target
from core.redis.modes import AsyncClient, RedisTarget
from core.settings import ServiceSettings

__all__ = ["connect"]


async def connect(url: str | None, settings: ServiceSettings | None = None) -> AsyncClient:
    """A connected client for ``url`` in the mode ``settings`` ask for (REDIS_MODE, detected when
    unset; REDIS_SENTINELS / REDIS_SENTINEL_MASTER); with no URL and no Sentinels an
    in-process fakeredis (for ``cdb run`` only). The transport's own backoff applies, not
    redis-py's retries on top. ``ConfigError`` names REDIS_MODE if the server contradicts it."""
    target = RedisTarget.from_settings(settings) if settings is not None else RedisTarget(url or "")
    target = RedisTarget(url or "", target.mode, target.sentinels, target.master)
    if not target.url and not target.sentinels:
        import fakeredis

        client: AsyncClient = fakeredis.FakeAsyncRedis()
        return client
    return await open_target(target)
