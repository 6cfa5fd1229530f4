"""Opening the Redis connection a service runs on: a real server (any mode), or embedded fakeredis."""

from __future__ import annotations

import redis

from core.errors import TransportError
from core.redis.connection import open_target
from core.redis.modes import AsyncClient, RedisTarget
from core.settings import ServiceSettings, redact_url

__all__ = ["connect"]


async def connect(url: str | None, settings: ServiceSettings | None = None) -> AsyncClient:
    """A connected client for ``url`` in the mode ``settings`` ask for (REDIS_MODE, detected when
    unset; REDIS_SENTINELS / REDIS_SENTINEL_MASTER); with no URL and no Sentinels an
    in-process fakeredis (for ``cdb run`` only). The transport's own backoff applies, not
    redis-py's retries on top. ``ConfigError`` names REDIS_MODE if the server contradicts it;
    :class:`TransportError` names REDIS_URL (password redacted) if the server cannot be used."""
    target = RedisTarget.from_settings(settings) if settings is not None else RedisTarget(url or "")
    target = RedisTarget(url or "", target.mode, target.sentinels, target.master)
    if not target.url and not target.sentinels:
        import fakeredis

        client: AsyncClient = fakeredis.FakeAsyncRedis()
        return client
    try:
        return await open_target(target)
    except (redis.RedisError, OSError) as exc:
        variable = "REDIS_SENTINELS" if target.sentinels else "REDIS_URL"
        where = ",".join(f"{h}:{p}" for h, p in target.sentinels) or redact_url(target.url)
        raise TransportError(
            f"Redis at {where} ({variable}) is not reachable at start: {type(exc).__name__}: {exc}"
        ) from exc
