"""The blocking publish round trip (``publish_message``, ``cdb dlq replay``) in every mode.

Standalone and Sentinel: one non-transactional pipeline ``PUBLISH`` + ``XADD`` (+ ``WAIT``).
Cluster: redis-py's cluster pipeline refuses ``PUBLISH``, and ``WAIT`` must run on the
connection that wrote, so the ``PUBLISH`` goes alone (any node; the cluster bus
forwards it) and ``XADD`` + ``WAIT`` go in one pipeline on the stream's own node.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

from redis.cluster import RedisCluster as SyncRedisCluster
from redis.exceptions import AskError, ClusterDownError, MovedError, TryAgainError

from core.redis.modes import SyncClient
from core.redis.wire import SlotMovedError

__all__ = ["send_sync"]

_REDIRECTS = (MovedError, AskError, TryAgainError, ClusterDownError)


def send_sync(
    client: SyncClient,
    channel: str,
    body: bytes,
    stream: str,
    fields: Mapping[str, str],
    *,
    trim: Mapping[str, Any],
    wait: tuple[int, int] | None,
) -> list[Any]:
    """Replies in the order PUBLISH, XADD[, WAIT]; error replies in place (not raised)."""
    if isinstance(client, SyncRedisCluster):
        published = client.publish(channel, body)
        node = client.get_node_from_key(stream)  # type: ignore[no-untyped-call]
        if node is None or node.redis_connection is None:
            _refresh(client)
            raise SlotMovedError(f"no cluster node serves the slot of {stream!r} right now")
        pipe = node.redis_connection.pipeline(transaction=False)
        pipe.xadd(stream, dict(fields), **trim)
        if wait is not None:
            pipe.execute_command("WAIT", *wait)
        replies = [published, *pipe.execute(raise_on_error=False)]
        if any(isinstance(r, _REDIRECTS) for r in replies):
            _refresh(client)
            raise SlotMovedError(f"cluster redirect while publishing to {stream!r}")
        return replies
    pipe = client.pipeline(transaction=False)
    pipe.publish(channel, body)
    pipe.xadd(stream, dict(fields), **trim)  # type: ignore[arg-type]  # redis-py: invariant dict
    if wait is not None:
        pipe.execute_command("WAIT", *wait)  # type: ignore[no-untyped-call]
    return list(pipe.execute(raise_on_error=False))


def _refresh(client: SyncRedisCluster) -> None:
    with contextlib.suppress(Exception):  # the retry reports what is really wrong
        client.nodes_manager.initialize()
