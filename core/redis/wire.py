"""The publish hot path on the wire: PUBLISH + XADD packed by hand, sent as one pipeline.

Why not ``client.pipeline()``: redis-py's asyncio pipeline packs every argument in
Python and wraps every reply read in its own timeout, about 30 us per message on
loopback, more than the encoding costs. Here the constant parts of each command
(channel, stream, trim clause, field names) are packed once, a message costs one
``bytes`` join, a chunk is written in one go, its replies are read under a single
timeout, and the next chunk is packed and written while Redis works on the
previous one. It is the same non-transactional pipeline (no MULTI/EXEC: the
commands are not atomic as a group), only cheaper to build.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

__all__ = [
    "DEFAULT_STREAM_MAXLEN",
    "Chunk",
    "PublishPacker",
    "StreamTrim",
    "pack_command",
    "send_pipelined",
]

DEFAULT_STREAM_MAXLEN = 1_000_000
"""Default approximate length bound of a topic stream (``STREAM_MAXLEN``)."""


@dataclass(frozen=True, slots=True)
class StreamTrim:
    """How XADD bounds a stream, always approximately (``~``, cheap: whole nodes only).

    ``retention_ms`` set: ``MINID ~ now - retention_ms`` (keep a time window);
    otherwise ``maxlen`` set: ``MAXLEN ~ maxlen``; both ``None``: no trimming.
    A consumer group that falls further behind than the bound loses the trimmed
    entries (XAUTOCLAIM reports them as deleted and the consumer logs them), so
    the bound must exceed the worst backlog you plan for.
    """

    maxlen: int | None = DEFAULT_STREAM_MAXLEN
    retention_ms: int | None = None

    def args(self, now_ms: int) -> list[str]:
        """The trim clause of XADD for the current time (server-side ids are wall-clock ms)."""
        if self.retention_ms is not None:
            return ["MINID", "~", f"{max(0, now_ms - self.retention_ms)}-0"]
        if self.maxlen is not None:
            return ["MAXLEN", "~", str(self.maxlen)]
        return []

    def xadd_kwargs(self, now_ms: int) -> dict[str, Any]:
        """The same clause as keyword arguments of redis-py's ``xadd``."""
        if self.retention_ms is not None:
            return {"minid": f"{max(0, now_ms - self.retention_ms)}-0", "approximate": True}
        if self.maxlen is not None:
            return {"maxlen": self.maxlen, "approximate": True}
        return {}


def _bulk(data: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(data), data)


def _command(args: Iterable[str | bytes]) -> list[bytes]:
    items = [a.encode("utf-8") if isinstance(a, str) else a for a in args]
    return [_bulk(a) for a in items]


def pack_command(args: Iterable[str | bytes]) -> bytes:
    """One command in the Redis protocol (RESP), e.g. an XACK with hundreds of ids."""
    parts = _command(args)
    return b"*%d\r\n" % len(parts) + b"".join(parts)


class PublishPacker:
    """Packs ``PUBLISH <channel> <body>`` + ``XADD <stream> [trim] * <fields>`` for one topic."""

    __slots__ = ("_names", "_publish_head", "_stream", "_trim")

    def __init__(self, channel: str, stream: str, trim: StreamTrim) -> None:
        self._publish_head = b"*3\r\n" + b"".join(_command(["PUBLISH", channel]))
        self._stream = stream
        self._trim = trim
        self._names: dict[str, bytes] = {}  # field name -> its packed bulk string (a topic has few)

    def pack(self, messages: Iterable[tuple[bytes, Mapping[str, str]]], now_ms: int) -> list[bytes]:
        """The wire bytes of every (body, fields) pair; two replies per message follow."""
        head_args = _command(["XADD", self._stream, *self._trim.args(now_ms), "*"])
        head, head_len = b"".join(head_args), len(head_args)
        pub, names = self._publish_head, self._names
        out: list[bytes] = []
        for body, fields in messages:
            parts = [
                pub,
                b"$%d\r\n" % len(body),
                body,
                b"\r\n",
                b"*%d\r\n" % (head_len + 2 * len(fields)),
                head,
            ]
            for name, value in fields.items():
                packed_name = names.get(name)
                if packed_name is None:
                    packed_name = names[name] = _bulk(name.encode("utf-8"))
                v = value.encode("utf-8")
                parts += (packed_name, b"$%d\r\n" % len(v), v, b"\r\n")
            out.append(b"".join(parts))
        return out


Chunk = tuple[list[bytes], int]
"""Wire bytes to write, and how many replies they will produce."""


async def send_pipelined(
    client: aioredis.Redis,
    chunks: Iterable[Chunk],
    on_replies: Callable[[list[Any]], None],
    *,
    timeout_s: float | None = None,
) -> None:
    """Write ``chunks`` in order on one pooled connection, handing each chunk's replies to
    ``on_replies`` (in order) as they are read.

    Chunk *k+1* is taken from the iterable (packed) and written before the replies of
    chunk *k* are read, so the server works on one chunk while Python packs the next.
    An error reply (e.g. ``WRONGTYPE``) is passed on in place as a ``ResponseError``;
    connection trouble raises redis-py's ``ConnectionError``/``TimeoutError`` after the
    replies confirmed so far were handed over, and the connection is dropped, not reused.
    """
    pool = client.connection_pool
    conn = await pool.get_connection()  # type: ignore[no-untyped-call]
    limit = timeout_s if timeout_s is not None else (conn.socket_timeout or 30.0)
    try:
        owed: int | None = None
        for data, replies in chunks:
            await conn.send_packed_command(data)
            if owed is not None:
                on_replies(await _read_replies(conn, owed, limit))
            owed = replies
        if owed is not None:
            on_replies(await _read_replies(conn, owed, limit))
    except BaseException:
        # Unread replies would be taken for the next command's: never reuse this connection.
        await conn.disconnect()
        raise
    finally:
        await pool.release(conn)


async def _read_replies(conn: Any, count: int, limit: float) -> list[Any]:
    out: list[Any] = []
    try:
        async with asyncio.timeout(limit):
            for _ in range(count):
                try:
                    # math.inf: no timer per reply; the chunk shares the one above.
                    out.append(await conn.read_response(timeout=math.inf))
                except ResponseError as exc:
                    out.append(exc)
    except TimeoutError:
        raise RedisTimeoutError(f"no reply within {limit}s") from None
    return out
