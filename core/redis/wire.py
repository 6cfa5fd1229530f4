"""The publish hot path on the wire: PUBLISH + XADD packed by hand, sent as one pipeline.

Why not ``client.pipeline()``: redis-py's asyncio pipeline packs every argument in
Python and wraps every reply read in its own timeout, about 30 us per message on
loopback, more than the encoding costs. Here the constant parts of each command
(channel, stream, trim clause, field names) are packed once, a message costs two
formats (its body; its field values into a template of the field names, when all ASCII),
a chunk is written in one go, its replies are read under a single timeout (straight
from hiredis's buffer when redis-py uses it, not one ``read_response`` coroutine chain per
reply), and the next chunk is packed and written while Redis works on the previous one.
It is the same non-transactional pipeline (no MULTI/EXEC: the commands are not atomic as
a group), only cheaper to build. ``tests/test_redis_wire.py`` holds both shortcuts to
the general forms.

On a Redis Cluster the commands of one call must live on one node: the caller names
the ``key`` (the stream) and the pipeline goes to the node that serves its slot
(``PUBLISH`` works on any node; the cluster bus forwards it). A ``MOVED``/``ASK``/
``TRYAGAIN``/``CLUSTERDOWN`` reply (slots migrating, a fail-over) refreshes the slot
map and raises :class:`SlotMovedError`, a connection-type error the transport retries.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import AskError, ClusterDownError, MovedError, ResponseError, TryAgainError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.utils import check_protocol_version

from core.redis.modes import AsyncClient

_REDIS_READ_RESPONSE = AbstractConnection.read_response

try:  # redis-py's hiredis parser (the `hiredis` extra): replies are read straight from it
    from redis._parsers.hiredis import NOT_ENOUGH_DATA as _NOT_ENOUGH_DATA
    from redis._parsers.hiredis import _AsyncHiredisParser as _HiredisParser
except ImportError:  # pragma: no cover - redis-py without the module: the general loop only
    _HiredisParser = None  # type: ignore[assignment,misc]
    _NOT_ENOUGH_DATA = None

__all__ = [
    "DEFAULT_STREAM_MAXLEN",
    "Chunk",
    "PublishPacker",
    "SlotMovedError",
    "StreamTrim",
    "pack_command",
    "plain_replies",
    "redirect_in",
    "send_one",
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


_MAX_TEMPLATES = 64
"""Field-name sets a packer remembers the XADD template of (a topic has one or two)."""

Message = tuple[bytes, Mapping[str, str], *tuple[Any, ...]]
"""A message to pack: its Pub/Sub body, its stream field map, then anything (ignored)."""


class PublishPacker:
    """Packs ``PUBLISH <channel> <body>`` + ``XADD <stream> [trim] * <fields>`` for one topic."""

    __slots__ = ("_names", "_publish_head", "_stream", "_templates", "_trim")

    def __init__(self, channel: str, stream: str, trim: StreamTrim) -> None:
        self._publish_head = b"*3\r\n" + b"".join(_command(["PUBLISH", channel]))
        self._stream = stream
        self._trim = trim
        self._names: dict[str, bytes] = {}  # field name -> its packed bulk string (a topic has few)
        self._templates: dict[tuple[str, ...], str | None] = {}  # field names -> their XADD part, see pack

    @property
    def stream(self) -> str:
        """The stream these XADDs append to (on a cluster: the key that picks the node)."""
        return self._stream

    def pack(self, messages: Iterable[Message], now_ms: int) -> list[bytes]:
        """The wire bytes of every (body, fields, ...) message; two replies per message follow."""
        head_args = _command(["XADD", self._stream, *self._trim.args(now_ms), "*"])
        head, head_len = b"".join(head_args), len(head_args)
        pub = self._publish_head
        out: list[bytes] = []
        for message in messages:
            body, fields = message[0], message[1]
            values = tuple(fields.values())
            front = b"%b$%d\r\n%b\r\n*%d\r\n%b" % (pub, len(body), body, head_len + 2 * len(values), head)
            # The common message, all ASCII: one format of the field part (names packed in its
            # template), where a character is a byte, so a value's length is its bulk length.
            template = self._template(tuple(fields)) if "".join(values).isascii() else None
            if template is not None:
                lengths_and_values: list[object] = [0] * (2 * len(values))
                lengths_and_values[0::2] = map(len, values)
                lengths_and_values[1::2] = values
                out.append(front + (template % tuple(lengths_and_values)).encode("ascii"))
            else:
                out.append(front + self._fields_utf8(fields))
        return out

    def _template(self, names: tuple[str, ...]) -> str | None:
        template = self._templates.get(names, "")
        if template == "":
            # Only ASCII names (a name's length must be its byte length); a name may hold '%',
            # which is doubled, not a placeholder. None: packed field by field.
            template = (
                "".join(f"${len(n)}\r\n{n.replace('%', '%%')}\r\n$%d\r\n%s\r\n" for n in names)
                if "".join(names).isascii()
                else None
            )
            if len(self._templates) < _MAX_TEMPLATES:
                self._templates[names] = template
        return template

    def _fields_utf8(self, fields: Mapping[str, str]) -> bytes:
        names = self._names
        parts: list[bytes] = []
        for name, value in fields.items():
            packed_name = names.get(name)
            if packed_name is None:
                packed_name = names[name] = _bulk(name.encode("utf-8"))
            v = value.encode("utf-8")
            parts += (packed_name, b"$%d\r\n" % len(v), v, b"\r\n")
        return b"".join(parts)


Chunk = tuple[list[bytes], int]
"""Wire bytes to write, and how many replies they will produce."""

_REDIRECTS = (MovedError, AskError, TryAgainError, ClusterDownError)
_PLAIN_REPLIES = frozenset({int, bytes, str})


class SlotMovedError(RedisConnectionError):
    """A cluster node answered that the key's slot is served elsewhere (or not right now);
    the slot map was refreshed and the chunk can be sent again (retried like a lost connection)."""


@contextlib.asynccontextmanager
async def _connection(client: AsyncClient, key: str | None) -> AsyncIterator[Any]:
    """One connection to the server that holds ``key``; dropped (not reused) after an error."""
    if isinstance(client, AsyncRedisCluster):
        if key is None:
            raise ValueError("a pipeline on a Redis Cluster needs the key whose node it goes to")
        await client.initialize()  # a no-op once the slot map is known
        node = client.get_node_from_key(key)
        if node is None:
            await _refresh_slots(client)
            raise SlotMovedError(f"no cluster node serves the slot of {key!r} right now")
        conn = node.acquire_connection()
        try:
            yield conn
        except BaseException as exc:
            await conn.disconnect()
            if isinstance(exc, RedisConnectionError | RedisTimeoutError | OSError):
                await _refresh_slots(client)  # the node may be gone: ask the others who serves what
            raise
        finally:
            node.release(conn)
        return
    pool = client.connection_pool
    conn = await pool.get_connection()  # type: ignore[no-untyped-call]
    try:
        yield conn
    except BaseException:
        # Unread replies would be taken for the next command's: never reuse this connection.
        await conn.disconnect()
        raise
    finally:
        await pool.release(conn)


async def _refresh_slots(client: AsyncRedisCluster) -> None:
    with contextlib.suppress(Exception):  # the next attempt reports what is really wrong
        await client.nodes_manager.initialize()


async def send_pipelined(
    client: AsyncClient,
    chunks: Iterable[Chunk],
    on_replies: Callable[[list[Any]], None],
    *,
    timeout_s: float | None = None,
    key: str | None = None,
) -> None:
    """Write ``chunks`` in order on one pooled connection, handing each chunk's replies to
    ``on_replies`` (in order) as they are read.

    Chunk *k+1* is taken from the iterable (packed) and written before the replies of
    chunk *k* are read, so the server works on one chunk while Python packs the next.
    An error reply (e.g. ``WRONGTYPE``) is passed on in place as a ``ResponseError``;
    connection trouble raises redis-py's ``ConnectionError``/``TimeoutError`` after the
    replies confirmed so far were handed over, and the connection is dropped, not reused.
    On a cluster, ``key`` picks the node; a redirect reply raises :class:`SlotMovedError`
    instead of handing over that chunk's replies.
    """
    async with _connection(client, key) as conn:
        limit = timeout_s if timeout_s is not None else (conn.socket_timeout or 30.0)
        owed: int | None = None
        for data, replies in chunks:
            try:
                await conn.send_packed_command(data)
            except AttributeError as exc:
                # redis-py's cluster client may tear a node's connection down (writer None)
                # while a slot map refresh runs during a fail-over: a connection error to retry.
                raise RedisConnectionError(f"connection to the node closed while sending: {exc}") from exc
            if owed is not None:
                on_replies(await _checked(client, await _read_replies(conn, owed, limit)))
            owed = replies
        if owed is not None:
            on_replies(await _checked(client, await _read_replies(conn, owed, limit)))


async def send_one(client: AsyncClient, command: Sequence[str | bytes], key: str | None) -> Any:
    """One command's reply, sent and read as :func:`send_pipelined` does (an error reply is
    returned in place, not raised): for calls made once per batch, whose cost in redis-py's
    ``execute_command`` (connection checks, a timer, event hooks) exceeds the command's own."""
    replies: list[Any] = []
    await send_pipelined(client, [([pack_command(command)], 1)], replies.extend, key=key)
    return replies[0]


def redirect_in(replies: Sequence[Any]) -> BaseException | None:
    """The first cluster redirect (``MOVED``/``ASK``/``TRYAGAIN``/``CLUSTERDOWN``) among the
    replies of a chunk, if any: the one rule both the asyncio and the blocking side apply."""
    if plain_replies(replies):
        return None
    return next((r for r in replies if isinstance(r, _REDIRECTS)), None)


def plain_replies(replies: Sequence[Any]) -> bool:
    """True when every reply is a plain value (an integer, a string; no error, no array): the
    common chunk, told in one pass in C instead of a Python test per reply."""
    return set(map(type, replies)) <= _PLAIN_REPLIES


async def _checked(client: AsyncClient, replies: list[Any]) -> list[Any]:
    moved = redirect_in(replies)
    if moved is not None and isinstance(client, AsyncRedisCluster):
        await _refresh_slots(client)
        raise SlotMovedError(f"cluster redirect: {moved}")
    return replies


async def _read_replies(conn: Any, count: int, limit: float) -> list[Any]:
    parser: Any = getattr(conn, "_parser", None)
    # Only in place of redis-py's own read_response: a connection class with its own (fakeredis
    # answers from memory, not from the parser's socket) keeps it.
    hiredis = (
        _HiredisParser is not None
        and type(parser) is _HiredisParser
        and getattr(type(conn), "read_response", None) is _REDIS_READ_RESPONSE
    )
    # RESP3 (redis-py's default protocol since 8.0) may put push messages between replies: the
    # fast reader hands them to the parser as read_response does, when hiredis marks them
    # (hiredis >= 3.2); an older hiredis under RESP3 takes the general loop.
    if hiredis and (
        not check_protocol_version(conn.protocol, 3) or parser._hiredis_PushNotificationType is not None
    ):
        return await _read_hiredis(conn, parser, count, limit)
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


async def _read_hiredis(conn: Any, parser: Any, count: int, limit: float) -> list[Any]:
    """The replies ``conn.read_response`` would give one by one (an error reply as its
    ``ResponseError``, in place), taken straight from hiredis's buffer: redis-py's three
    coroutine layers per reply cost ~0.6 us each, two replies per published message. A RESP3
    push message in between (a client-tracking invalidation, ...) is no reply: it goes to the
    parser's push handlers, as ``read_response`` sends it, and the next reply is read."""
    out: list[Any] = []
    push = parser._hiredis_PushNotificationType
    try:
        async with asyncio.timeout(limit):
            if not parser._connected:
                raise RedisConnectionError("connection closed before its replies were read")
            gets = parser._reader.gets
            while len(out) < count:
                reply = gets()
                if reply is _NOT_ENOUGH_DATA:
                    await parser.read_from_socket()
                elif isinstance(reply, RedisConnectionError):
                    raise reply
                elif push is not None and isinstance(reply, push):
                    await parser.handle_push_response(reply)
                else:
                    if type(reply) is list and reply and isinstance(reply[0], RedisConnectionError):
                        raise reply[0]
                    out.append(reply)
    except TimeoutError:
        raise RedisTimeoutError(f"no reply within {limit}s") from None
    except OSError as exc:  # what redis-py's read_response turns a socket error into
        raise RedisConnectionError(f"error while reading replies: {exc}") from exc
    if conn.health_check_interval:
        conn.next_health_check = asyncio.get_running_loop().time() + conn.health_check_interval
    return out
