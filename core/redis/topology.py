"""The pipeline's partition count, agreed at start: ``KeySpace.topology()`` holds it.

Producers route a symbol with ``crc32(symbol) % N``, so every instance of every
service must use the same ``N``: with two counts, one symbol's messages would land in
two streams and its order (and the per-symbol state built on it) would be lost. The
first instance that starts writes ``{"partitions": N}`` (``SET NX``); every later one
compares. A different count refuses to start with a
:class:`~core.errors.ConfigError` naming ``TOPIC_PARTITIONS``. Changing the count is
a deliberate operation: stop every instance, let the consumer groups drain, delete
the key (``redis-cli DEL <prefix>cdb:topology``), start everything with the new count.
"""

from __future__ import annotations

import json
from typing import Any

from core.errors import ConfigError
from core.redis.modes import AsyncClient, SyncClient
from core.redis.retry import RetryPolicy, call_async
from core.topics import KeySpace

__all__ = ["TOPOLOGY_KEY_HELP", "ensure_topology", "read_partitions", "read_partitions_sync"]

TOPOLOGY_KEY_HELP = "stop every instance, let the groups drain, then DEL the topology key"


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


async def ensure_topology(redis: AsyncClient, keys: KeySpace, retry: RetryPolicy | None = None) -> int:
    """Record ``keys.partitions`` as the pipeline's count if none is, else check it is the
    recorded one; returns the count. :class:`ConfigError` on a mismatch; connection errors
    are retried (a service may start while its Redis fails over)."""
    return await call_async(retry or RetryPolicy(), "topology check", lambda: _ensure(redis, keys))


async def _ensure(redis: AsyncClient, keys: KeySpace) -> int:
    document = json.dumps({"partitions": keys.partitions})
    if await redis.set(keys.topology(), document, nx=True):
        return keys.partitions
    recorded = await read_partitions(redis, keys)
    if recorded is None:  # unreadable: take it over rather than fail every start
        await redis.set(keys.topology(), document)
        return keys.partitions
    if recorded != keys.partitions:
        raise ConfigError(
            "TOPIC_PARTITIONS",
            keys.partitions,
            [str(recorded)],
            f"the running pipeline's streams are split {recorded} way(s) ({keys.topology()}); "
            f"to change the count, {TOPOLOGY_KEY_HELP}",
        )
    return recorded
