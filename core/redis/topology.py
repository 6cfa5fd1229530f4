"""The pipeline's partition count, agreed at start: ``KeySpace.topology()`` holds it.

Producers route a symbol with ``crc32(symbol) % N``, so every instance of every
service must use the same ``N``: with two counts, one symbol's messages would land in
two streams and its order (and the per-symbol state built on it) would be lost. The
first instance that starts writes ``{"partitions": N}`` (``SETNX``, the one write a
service's ACL user may do on that key: it can create the key but never overwrite or
delete it); every later one compares. A different or unreadable count refuses to start
with a :class:`~core.errors.ConfigError` naming ``TOPIC_PARTITIONS`` and the command that
fixes it. Changing the count is a deliberate operator action (``cdb-operator`` may SET and
DEL the key): stop every instance, let the consumer groups drain, run
``cdb topology set N`` (or ``cdb topology reset``, and the first start records its count).

Each service's ``PARTITION_LEASE_MS`` is part of the same check (``KeySpace.lease_setting``,
recorded by its first consuming instance). Both operator commands clear the recorded TTLs,
so the topology is always re-recorded as one piece: after either, each service's next start
records its own TTL and the ones after it must agree.
"""

from __future__ import annotations

import json
from typing import Any

from core.errors import ConfigError
from core.redis.modes import AsyncClient, SyncClient
from core.redis.retry import RetryPolicy, call_async
from core.topics import KeySpace, ServiceName

__all__ = [
    "TOPOLOGY_KEY_HELP",
    "ensure_lease_setting",
    "ensure_topology",
    "read_lease_settings_sync",
    "read_partitions",
    "read_partitions_sync",
    "reset_topology_sync",
    "set_topology_sync",
]

TOPOLOGY_KEY_HELP = (
    "stop every instance, let the groups drain, then run `cdb topology set N` "
    "(or `cdb topology reset`) with REDIS_URL logged in as cdb-operator"
)


def _parse(raw: Any) -> int | None:
    if raw is None:
        return None
    try:
        value = json.loads(raw)
        return int(value["partitions"])
    except (ValueError, TypeError, KeyError):
        return None


async def read_partitions(redis: AsyncClient, keys: KeySpace) -> int | None:
    """The partition count the running pipeline recorded, or ``None`` if none did yet."""
    return _parse(await redis.get(keys.topology()))


def read_partitions_sync(redis: SyncClient, keys: KeySpace) -> int | None:
    """:func:`read_partitions` through a blocking client (the ``cdb`` commands)."""
    return _parse(redis.get(keys.topology()))


def _document(partitions: int) -> str:
    return json.dumps({"partitions": partitions})


def _parse_lease(raw: Any) -> int | None:
    if raw is None:
        return None
    try:
        return int(json.loads(raw)["partition_lease_ms"])
    except (ValueError, TypeError, KeyError):
        return None


def read_lease_settings_sync(redis: SyncClient, keys: KeySpace) -> dict[ServiceName, int | None]:
    """Each service's recorded PARTITION_LEASE_MS (only the services that recorded one;
    ``None``: recorded but unreadable)."""
    found: dict[ServiceName, int | None] = {}
    for service in ServiceName:
        raw = redis.get(keys.lease_setting(service))
        if raw is not None:
            found[service] = _parse_lease(raw)
    return found


def _clear_lease_settings(redis: SyncClient, keys: KeySpace) -> dict[ServiceName, int | None]:
    cleared = read_lease_settings_sync(redis, keys)
    for service in ServiceName:
        redis.delete(keys.lease_setting(service))  # one key per command: cluster-safe
    return cleared


def set_topology_sync(redis: SyncClient, keys: KeySpace, partitions: int) -> dict[ServiceName, int | None]:
    """Record ``partitions`` as the pipeline's count, replacing any (an operator action), and
    clear the recorded lease TTLs as :func:`reset_topology_sync` does (each service's next
    start records its own); returns the TTLs cleared."""
    if partitions < 1:
        raise ConfigError("partitions", partitions, ["an integer >= 1"], "the pipeline's partition count")
    redis.set(keys.topology(), _document(partitions))
    return _clear_lease_settings(redis, keys)


def reset_topology_sync(redis: SyncClient, keys: KeySpace) -> bool:
    """Delete the recorded count and lease TTLs (the next service start records its own);
    True if a count was set."""
    found = bool(redis.delete(keys.topology()))
    _clear_lease_settings(redis, keys)
    return found


async def ensure_lease_setting(
    redis: AsyncClient, keys: KeySpace, service: ServiceName, lease_ms: int
) -> int:
    """Record ``lease_ms`` as ``service``'s PARTITION_LEASE_MS if none is, else check it is the
    recorded one. Instances with different TTLs would disagree on when a silent owner is
    gone (one takes over while the other still counts itself the owner), so a different
    value refuses to start (:class:`ConfigError`)."""

    async def ensure() -> int:
        key = keys.lease_setting(service)
        if await redis.setnx(key, json.dumps({"partition_lease_ms": lease_ms})):
            return lease_ms
        recorded = _parse_lease(await redis.get(key))
        if recorded is None or recorded != lease_ms:
            raise ConfigError(
                "PARTITION_LEASE_MS",
                lease_ms,
                [str(recorded) if recorded is not None else "a readable TTL recorded by the pipeline"],
                f"the running {service.value} instances use this lease TTL ({key}); to change it, "
                + TOPOLOGY_KEY_HELP,
            )
        return recorded

    return await call_async(RetryPolicy(), "lease setting check", ensure)


async def ensure_topology(redis: AsyncClient, keys: KeySpace, retry: RetryPolicy | None = None) -> int:
    """Record ``keys.partitions`` as the pipeline's count if none is, else check it is the
    recorded one; returns the count. :class:`ConfigError` on a mismatch; connection errors
    are retried (a service may start while its Redis fails over)."""
    return await call_async(retry or RetryPolicy(), "topology check", lambda: _ensure(redis, keys))


async def _ensure(redis: AsyncClient, keys: KeySpace) -> int:
    # SETNX, not SET NX: a service's ACL user is allowed SETNX only, which cannot overwrite.
    if await redis.setnx(keys.topology(), _document(keys.partitions)):
        return keys.partitions
    recorded = await read_partitions(redis, keys)
    if recorded is None:
        # Unreadable: refuse rather than overwrite (a service may not, and guessing which
        # count the running instances use could split a symbol across two streams).
        raise ConfigError(
            "TOPIC_PARTITIONS",
            keys.partitions,
            ["a count recorded by the pipeline"],
            f"{keys.topology()} holds no readable partition count; {TOPOLOGY_KEY_HELP}",
        )
    if recorded != keys.partitions:
        raise ConfigError(
            "TOPIC_PARTITIONS",
            keys.partitions,
            [str(recorded)],
            f"the running pipeline's streams are split {recorded} way(s) ({keys.topology()}); "
            f"to change the count, {TOPOLOGY_KEY_HELP}",
        )
    return recorded
