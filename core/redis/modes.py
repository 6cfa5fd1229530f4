"""Which Redis the pipeline talks to -- one server, a Cluster or a Sentinel-watched primary --
and opening redis-py's own client for it.

Nothing home-made: a cluster is redis-py's ``RedisCluster`` (any node's URL finds the
rest), a Sentinel set-up is redis-py's ``Sentinel(...).master_for(name)``, which asks
the Sentinels for the current primary on every (re)connect, so a fail-over is ridden
out by the transport's ordinary reconnect-and-retry.

``REDIS_MODE`` unset: the mode is read from the server at ``REDIS_URL`` (``HELLO 2``
answers ``mode standalone|cluster|sentinel``; unlike ``INFO`` it needs no ACL
permission, so the services' least-privilege users can ask too). Set: the server must agree, else
:class:`~core.errors.ConfigError` names ``REDIS_MODE`` at start -- a standalone client
on a cluster node would fail later with MOVED errors, a cluster client on a standalone
server not at all, silently skipping nothing but the point of the setting.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import redis
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.asyncio.sentinel import Sentinel as AsyncSentinel
from redis.cluster import RedisCluster as SyncRedisCluster
from redis.sentinel import Sentinel as SyncSentinel

from core.errors import ConfigError
from core.settings import ServiceSettings
from core.topics import RedisMode
from core.urls import REDIS_SCHEMES, redact_url, url_problem

__all__ = [
    "AsyncClient",
    "RedisTarget",
    "SyncClient",
    "decodes_responses",
    "detect_mode",
    "detect_mode_sync",
    "is_cluster",
    "mode_of_hello",
    "reply_text",
]

AsyncClient = aioredis.Redis | AsyncRedisCluster
"""An asyncio client of any mode (a Sentinel-managed primary is a plain ``Redis``)."""
SyncClient = redis.Redis | SyncRedisCluster
"""A blocking client of any mode."""


def reply_text(value: Any) -> str:
    """A Redis reply value as text (bytes decoded as UTF-8, undecodable bytes replaced)."""
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)


def decodes_responses(client: AsyncClient | SyncClient) -> bool:
    """True if ``client`` turns replies into ``str`` (the transport needs the bytes)."""
    if isinstance(client, AsyncRedisCluster | SyncRedisCluster):
        return bool(client.get_connection_kwargs().get("decode_responses"))
    return bool(client.connection_pool.connection_kwargs.get("decode_responses"))


def is_cluster(client: object) -> bool:
    """True for a Redis Cluster client (blocking or asyncio)."""
    return isinstance(client, AsyncRedisCluster | SyncRedisCluster)


def _address(entry: str) -> tuple[str, int]:
    host, _, port = entry.strip().rpartition(":")
    return host, int(port)


@dataclass(frozen=True, slots=True)
class RedisTarget:
    """Where the pipeline's Redis is and how to reach it (from ``REDIS_*`` settings).

    ``mode`` ``None``: detect. ``sentinels`` empty in sentinel mode: the host of ``url``
    is the Sentinel. ``master`` empty: the only master the Sentinels monitor.
    """

    url: str
    mode: RedisMode | None = None
    sentinels: tuple[tuple[str, int], ...] = ()
    master: str = ""

    @classmethod
    def from_settings(cls, settings: ServiceSettings) -> RedisTarget:
        """REDIS_URL, REDIS_MODE, REDIS_SENTINELS, REDIS_SENTINEL_MASTER of ``settings``."""
        return cls.of(
            settings.redis_url or "",
            settings.redis_mode,
            settings.redis_sentinels,
            settings.redis_sentinel_master,
        )

    @classmethod
    def of(
        cls, url: str, mode: RedisMode | str | None = None, sentinels: str = "", master: str = ""
    ) -> RedisTarget:
        """A target from the raw option values (``cdb`` commands: --redis-url, --redis-mode, ...)."""
        if isinstance(mode, str) and not isinstance(mode, RedisMode):
            try:
                mode = RedisMode(mode.strip().lower()) if mode.strip() else None
            except ValueError:
                raise ConfigError("REDIS_MODE", mode, [m.value for m in RedisMode]) from None
        try:
            addresses = tuple(_address(e) for e in sentinels.split(",") if e.strip())
        except ValueError:
            raise ConfigError("REDIS_SENTINELS", sentinels, ["host:port,host:port"]) from None
        problem = url_problem(url, REDIS_SCHEMES) if url else None
        if problem is not None:
            # Refused here, redacted: redis-py's own error could quote a password (a URL whose
            # "@" was forgotten has it parsed as the port).
            raise ConfigError("REDIS_URL", redact_url(url), ["redis://user:password@host:port/db"], problem)
        return cls(url, mode, addresses, master)

    def shown(self) -> str:
        """For logs and errors: the URL without its password, and the mode if known."""
        where = redact_url(self.url) or ",".join(f"{h}:{p}" for h, p in self.sentinels)
        return f"{where} ({self.mode.value if self.mode else 'mode to be detected'})"

    def sentinel_addresses(self) -> list[tuple[str, int]]:
        """The Sentinels to ask: ``sentinels``, or the host and port of ``url``."""
        if self.sentinels:
            return list(self.sentinels)
        parts = urlsplit(self.url)
        return [(parts.hostname or "127.0.0.1", parts.port or 26379)]

    def master_kwargs(self) -> dict[str, Any]:
        """Credentials and database for the primary's connections, taken from ``url``."""
        if not self.url:
            return {}
        parts = urlsplit(self.url)
        kwargs: dict[str, Any] = {}
        if parts.username:
            kwargs["username"] = parts.username
        if parts.password:
            kwargs["password"] = parts.password
        db = parts.path.lstrip("/")
        if db.isdigit():
            kwargs["db"] = int(db)
        return kwargs


def mode_of_hello(hello: Any) -> RedisMode:
    """The ``mode`` of a ``HELLO`` reply (a flat RESP2 list, or a dict if a client parsed it)."""
    if isinstance(hello, list | tuple):
        hello = dict(zip(hello[::2], hello[1::2], strict=False))
    fields = {(k.decode() if isinstance(k, bytes) else str(k)): v for k, v in dict(hello).items()}
    raw = fields.get("mode", b"standalone")
    text = raw.decode() if isinstance(raw, bytes) else str(raw)
    try:
        return RedisMode(text)
    except ValueError:
        return RedisMode.STANDALONE


async def detect_mode(url: str, **options: Any) -> RedisMode:
    """The mode of the server at ``url`` (``HELLO 2`` field ``mode``)."""
    client = aioredis.Redis.from_url(url, **options)
    try:
        return mode_of_hello(await client.execute_command("HELLO", "2"))  # type: ignore[no-untyped-call]
    finally:
        await client.aclose()


def detect_mode_sync(url: str, **options: Any) -> RedisMode:
    """:func:`detect_mode` through a blocking client."""
    client = redis.Redis.from_url(url, **options)
    try:
        return mode_of_hello(client.execute_command("HELLO", "2"))  # type: ignore[no-untyped-call]
    finally:
        client.close()


def refuse(target: RedisTarget, found: RedisMode) -> ConfigError:
    """The error for a ``REDIS_MODE`` the server at ``REDIS_URL`` contradicts."""
    assert target.mode is not None
    hint = f"the server at {redact_url(target.url)} reports mode {found.value} (HELLO)"
    if found is RedisMode.SENTINEL:
        hint += "; a Sentinel URL needs REDIS_MODE=sentinel"
    return ConfigError("REDIS_MODE", target.mode.value, [found.value, "empty (detect)"], hint)


def masters_by_name(reply: Any) -> dict[str, Any]:
    """``SENTINEL MASTERS`` as {name: state}, whether redis-py parsed it as RESP2 or RESP3."""
    if isinstance(reply, dict):
        return dict(reply)
    return {str(m.get("name")): m for m in reply or [] if isinstance(m, dict)}


def choose_master(target: RedisTarget, masters: dict[str, Any]) -> str:
    """The master name to follow: REDIS_SENTINEL_MASTER, else the only one monitored."""
    names = sorted(masters)
    if target.master:
        if target.master not in names:
            raise ConfigError(
                "REDIS_SENTINEL_MASTER", target.master, names or ["(none monitored)"], "not monitored"
            )
        return target.master
    if len(names) != 1:
        raise ConfigError(
            "REDIS_SENTINEL_MASTER", "", names or ["(none monitored)"], "the Sentinels monitor several"
        )
    return names[0]


class SentinelPrimary(aioredis.Redis):
    """The Sentinel-managed primary (asyncio); closing it also closes the Sentinel clients."""

    sentinel_manager: AsyncSentinel | None = None

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        """Close the primary's pool and the connections to the Sentinels."""
        await super().aclose(close_connection_pool)
        if self.sentinel_manager is not None:
            await self.sentinel_manager.aclose()
            self.sentinel_manager = None


class SyncSentinelPrimary(redis.Redis):
    """The Sentinel-managed primary (blocking); closing it also closes the Sentinel clients."""

    sentinel_manager: SyncSentinel | None = None

    def close(self) -> None:
        """Close the primary's pool and the connections to the Sentinels."""
        super().close()
        if self.sentinel_manager is not None:
            for client in self.sentinel_manager.sentinels:
                client.close()
            self.sentinel_manager = None
