"""What ``cdb acl audit`` checks on a running server: entries trimmed from a topic stream
before a consumer group read them (loss made visible), and whether the ``default`` user
still accepts connections that did not log in.

ACLs cannot stop a stream's producer from trimming it (``XADD ... MAXLEN 0``): Redis ACL
rules do not look at arguments, and scripts and Functions run with the caller's
permissions (docs/security.md, "Limits"). The same loss happens honestly when
``STREAM_MAXLEN`` is smaller than a consumer's backlog. Either way it must not be silent:
:func:`trimmed_before_delivery` compares, per stream and group, how many entries the
stream ever received (``entries-added``) and the group has read (``entries-read``) with
what is still there to read. Trimming removes the oldest entries only (no service user
may ``XDEL`` a topic stream), so when the oldest entry left is newer than the group's
last delivered one, every undelivered entry that is not in the stream any more was
trimmed. Needs Redis 7.0 (those ``XINFO`` fields) and only read rights (``cdb-operator``).
"""

from __future__ import annotations

import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from redis.exceptions import ResponseError

from core.redis.modes import SyncClient
from core.topics import KeySpace, Topic

__all__ = ["TrimLoss", "default_user_answers", "trimmed_before_delivery"]


@dataclass(frozen=True, slots=True)
class TrimLoss:
    """``lost`` entries of ``stream`` were trimmed before consumer group ``group`` read them."""

    topic: str
    stream: str
    group: str
    lost: int
    last_delivered_id: str


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _id(value: Any) -> tuple[int, int]:
    ms, _, seq = _text(value).partition("-")
    return int(ms), int(seq or 0)


def _lost(stream: Mapping[str, Any], group: Mapping[str, Any]) -> int:
    """Undelivered entries of ``group`` that are no longer in ``stream`` (0 if none or unknown)."""
    added, read = stream.get("entries-added"), group.get("entries-read")
    if added is None or read is None:
        return 0  # a group moved with XGROUP SETID and no ENTRIESREAD: not countable
    first = stream.get("first-entry")
    last_delivered = _id(group.get("last-delivered-id", "0-0"))
    if first and _id(first[0]) <= last_delivered:
        return 0  # the head of the stream is still at or before the group: nothing unread trimmed
    return max(0, int(added) - int(read) - int(stream.get("length", 0)))


def trimmed_before_delivery(client: SyncClient, keys: KeySpace) -> list[TrimLoss]:
    """Every (stream, group) of the pipeline's topics that lost unread entries to trimming."""
    out: list[TrimLoss] = []
    for topic in Topic:
        for name in keys.streams(topic):
            try:
                stream: Any = client.xinfo_stream(name)
                groups: Any = client.xinfo_groups(name)
            except ResponseError as exc:
                if "no such key" in str(exc).lower():
                    continue  # a topic nothing was published to yet
                raise
            for group in groups:
                lost = _lost(stream, group)
                if lost:
                    out.append(
                        TrimLoss(
                            topic.value,
                            name,
                            _text(group["name"]),
                            lost,
                            _text(group.get("last-delivered-id", "0-0")),
                        )
                    )
    return out


def default_user_answers(host: str, port: int, *, timeout_s: float = 5.0) -> bool:
    """True when a connection that has not logged in gets anything but ``NOAUTH`` for
    ``PING``: the ``default`` user is on (the deployable ACL file turns it off)."""
    with socket.create_connection((host, port), timeout=timeout_s) as sock:
        sock.sendall(b"*1\r\n$4\r\nPING\r\n")
        reply = sock.recv(256)
    return not reply.startswith(b"-NOAUTH")
