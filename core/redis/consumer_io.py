"""The Redis side of a stream consumer: one method per group command, each retried.

Kept apart from :mod:`core.redis.consumer` so that the consumer reads as the
delivery policy (decode, handle, dead-letter, ack) and this module as the
commands it takes (XGROUP, XREADGROUP, XAUTOCLAIM, XPENDING, XACK, XINFO).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

from redis.exceptions import ResponseError

from core.codec.fields import fields_of_flat
from core.redis.fence import Fence
from core.redis.modes import AsyncClient, reply_text
from core.redis.retry import RetryPolicy, call_async
from core.redis.wire import pack_command, send_pipelined

__all__ = ["Entry", "GroupIO", "group_backlog", "id_key", "undelivered"]

T = TypeVar("T")

Entry = tuple[bytes, dict[bytes, bytes]]
"""A stream entry as redis-py returns it: (id, fields); empty fields = deleted while pending."""

OnGroupRetry = Callable[[str, int, BaseException], None]
"""Called before a retry with the operation name, the failed attempt number and its error."""


def _entries(reply: Any) -> list[Entry]:
    """The entries of an XREADGROUP reply for one stream (RESP2 list or RESP3 dict)."""
    if not reply:
        return []
    if isinstance(reply, dict):
        batches = list(reply.values())
        return list(batches[0][0]) if batches and batches[0] else []
    return list(reply[0][1])


def _raw_entries(reply: Any) -> list[Entry]:
    """The entries of a raw XREADGROUP reply for one stream, as :func:`_entries` gives them
    from redis-py's parsed one: RESP2 ``[[stream, [[id, [f, v, ...]], ...]]]`` or RESP3
    ``{stream: [[id, [f, v, ...]], ...]}``; a nil reply (nothing new) is no entries. Built
    here because redis-py's own parse (one generator-fed dict per entry) costs ~1 us an entry."""
    if not reply:
        return []
    batch = next(iter(reply.values())) if isinstance(reply, dict) else reply[0][1]
    # One comprehension, zip without keywords: ~0.4 us an entry (a loop with zip(strict=...)
    # costs ~0.5). A deleted entry (nil fields, only in a history read) gets no fields. A dict
    # shorter than the pairs means a name came twice: that entry is kept whole (RepeatedFields,
    # which every codec refuses); the check costs ~30 ns an entry.
    return [
        (entry_id, fields if len(fields) * 2 == len(flat or ()) else fields_of_flat(flat))
        for entry_id, flat in batch
        for pairs in (iter(flat or ()),)
        for fields in (dict(zip(pairs, pairs)),)  # noqa: B905
    ]


class GroupIO:
    """The commands one consumer of one group on one stream sends."""

    def __init__(
        self,
        redis: AsyncClient,
        *,
        stream: str,
        group: str,
        consumer: str,
        retry: RetryPolicy,
        group_start: str = "0",
        on_retry: OnGroupRetry | None = None,
        fence: Fence | None = None,
    ) -> None:
        self.redis = redis
        self.fence = fence
        self.stream = stream
        self.group = group
        self.consumer = consumer
        self.retry = retry
        self.group_start = group_start
        self._on_retry = on_retry
        # The newest entry this consumer received by any read (new, own pending, claimed): its
        # pending entries after it were delivered by a read whose reply was lost (core.redis.fence).
        self._taken: bytes | None = None
        self.recovered = False  # the last read_new returned such entries, not new ones
        self.last_delivered: bytes | None = None  # the group's, as of the last backlog()
        # Fenced: the stream's last id as of the last read_new, if it found nothing new (what a
        # blocking read right after it may wait after, without reading again first).
        self.idle_after: bytes | None = None
        self._own_cursor: bytes | str = "0-0"
        self._claim_cursor: bytes | str = "0-0"
        self._ack_head: bytes | None = None  # "XACK <stream> <group>" packed, without the count
        self._reads: dict[tuple[int, int | None], bytes] = {}  # packed XREADGROUP > per (count, block)

    async def ensure_group(self, start: str | None = None) -> None:
        """``XGROUP CREATE <stream> <group> <start> MKSTREAM``; an existing group is fine."""

        async def create() -> None:
            try:
                await self.redis.xgroup_create(
                    self.stream, self.group, id=start or self.group_start, mkstream=True
                )
            except ResponseError as exc:
                if not str(exc).startswith("BUSYGROUP"):
                    raise

        await call_async(self.retry, f"XGROUP CREATE {self.stream}", create, on_retry=self._retrying("group"))

    async def read_new(
        self, count: int, block_ms: int | None, *, ack: Sequence[bytes] = (), after: bytes | None = None
    ) -> list[Entry]:
        """Up to ``count`` entries never delivered to the group (``>``), waiting up to ``block_ms``.

        ``ack``: ids to acknowledge first, in the same round trip (``XACK`` then ``XREADGROUP``,
        pipelined; fenced: in the lease-checking script): when this returns they are
        acknowledged; when it raises, they may or may not be (an ``XACK`` is safe to send again).

        Fenced: taken by the lease-checking script; the wait before it is a group-less
        ``XREAD BLOCK`` that moves nothing (harmless if re-sent after a pause), pipelined with
        the script so that waking and taking are one round trip. A blocking call reads first
        and waits only if that found nothing, unless it knows where to wait from: ``after`` (the
        :attr:`idle_after` of a read that just found nothing) or, carrying an ``ack``, the newest
        entry this consumer received. Then it waits at once, since an entry that came in
        between ends the wait at once and is taken in the same round trip; with an ``ack``
        (acknowledged before the wait, in that round trip) a consumer that caught up settles a
        batch and waits for the next in one round trip. (An entry delivered meanwhile to
        another consumer ends such a wait too, with nothing to take: then :attr:`idle_after`
        says where the next wait starts.)
        If an earlier read's reply was lost
        (a retry re-sent it), the entries it delivered come first, and :attr:`recovered` says
        so (they were delivered before: their counts matter)."""
        fence = self.fence
        self.recovered = False
        if fence is not None:
            self.idle_after = None
            wait_from = after if after is not None else (self._taken if ack else None)
            if block_ms and wait_from is not None:
                return await self._wait_and_read(fence, count, block_ms, wait_from, ack)
            read = await self._call(
                "read",
                lambda: fence.read(self.consumer, count, ">", taken=self._taken, ack=ack),
                also="ack" if ack else None,
            )
            if not read.entries and read.wait_after is not None:
                if block_ms:
                    return await self._wait_and_read(fence, count, block_ms, read.wait_after)
                self.idle_after = read.wait_after
            self.recovered = read.recovered
            self._received(read.entries)
            return read.entries
        command = self._read_command(count, block_ms)
        if not ack:
            return await self._call("read", lambda: self._send_read([command], 1))
        commands = [self._ack_command(ack), command]
        # One round trip: the server runs the XACK, then the read. Retried as one (an XACK sent
        # twice is harmless; a read sent twice is what _on_retry("read") recovers from), and a
        # retry counts for both, as if each had been sent alone.
        return await self._call("read", lambda: self._send_read(commands, 2), also="ack")

    async def _wait_and_read(
        self, fence: Fence, count: int, block_ms: int, last: bytes, ack: Sequence[bytes] = ()
    ) -> list[Entry]:
        """Fenced: acknowledge ``ack``, wait (group-less, moving nothing) for an entry after
        ``last``, then take new entries through the lease-checking script, in one round trip
        (:meth:`Fence.wait_and_read`: an idle hop's wake costs no round trip of its own).
        Retried as one: a re-sent ack or wait is harmless, a re-sent read is what the script's
        ``taken`` check recovers from."""
        read = await self._call(
            "read",
            lambda: fence.wait_and_read(self.consumer, count, last, block_ms, taken=self._taken, ack=ack),
            also="ack" if ack else "wait",
        )
        if not read.entries:
            self.idle_after = read.wait_after
        self.recovered = read.recovered
        self._received(read.entries)
        return read.entries

    def _read_command(self, count: int, block_ms: int | None) -> bytes:
        key = (count, block_ms)
        command = self._reads.get(key)
        if command is None:
            wait = [] if block_ms is None else ["BLOCK", str(block_ms)]
            args = ["XREADGROUP", "GROUP", self.group, self.consumer, "COUNT", str(count), *wait]
            command = pack_command([*args, "STREAMS", self.stream, ">"])
            if len(self._reads) < 8:  # a consumer uses one or two (blocking or not)
                self._reads[key] = command
        return command

    async def _send_read(self, commands: list[bytes], replies: int) -> list[Entry]:
        out: list[Any] = []
        await send_pipelined(self.redis, [(commands, replies)], out.extend, key=self.stream)
        for reply in out:
            if isinstance(reply, ResponseError):
                raise reply  # the XACK's first: NOGROUP recreates the group and sends both again
        return _raw_entries(out[-1])

    async def read_own_pending(self, count: int) -> list[Entry]:
        """The next ``count`` entries pending for this consumer (its history), from a cursor
        that restarts at the beginning once a read returns fewer than ``count``."""
        cursor = self._own_cursor
        fence = self.fence
        if fence is not None:
            read = await self._call("read_pending", lambda: fence.read(self.consumer, count, cursor))
            entries = read.entries
            self._received(entries)
        else:
            reply = await self._call(
                "read_pending",
                lambda: self.redis.xreadgroup(self.group, self.consumer, {self.stream: cursor}, count=count),
            )
            entries = _entries(reply)
        self._own_cursor = entries[-1][0] if len(entries) >= count else "0-0"
        return entries

    async def reclaim(self, min_idle_ms: int, count: int) -> tuple[list[Entry], bool]:
        """``XAUTOCLAIM`` up to ``count`` entries idle ``min_idle_ms``; also says whether the
        scan has more to look at (the cursor did not wrap to ``0-0``)."""
        cursor = self._claim_cursor
        fence = self.fence
        if fence is not None:
            next_cursor, entries = await self._call(
                "reclaim", lambda: fence.claim(self.consumer, min_idle_ms, cursor, count)
            )
        else:
            reply = await self._call(
                "reclaim",
                lambda: self.redis.xautoclaim(
                    self.stream, self.group, self.consumer, min_idle_ms, start_id=cursor, count=count
                ),
            )
            next_cursor, entries = reply[0], list(reply[1])
        self._claim_cursor = next_cursor
        more = next_cursor not in (b"0-0", "0-0")
        claimed = [(i, f) for i, f in entries if i is not None]
        if fence is not None:
            self._received(claimed)
        return claimed, more

    def _received(self, entries: Sequence[Entry]) -> None:
        # Every read returns its entries in id order: the last is the newest.
        if entries and (self._taken is None or id_key(entries[-1][0]) > id_key(self._taken)):
            self._taken = entries[-1][0]

    async def delivery_counts(self, ids: Sequence[bytes], *, extra: int = 0) -> dict[bytes, int]:
        """How often each of ``ids`` (pending for this consumer) has been delivered."""
        if not ids:
            return {}
        first, last = min(ids, key=id_key), max(ids, key=id_key)
        rows: list[dict[str, Any]] = await self._call(
            "pending",
            lambda: self.redis.xpending_range(
                self.stream, self.group, first, last, len(ids) + extra + 1, consumername=self.consumer
            ),
        )
        return {row["message_id"]: int(row["times_delivered"]) for row in rows}

    async def ack(self, ids: Sequence[bytes]) -> None:
        """``XACK`` all of ``ids`` in one command (packed here: redis-py's Python packer
        costs about 1 us per id, a noticeable share of the consumer loop). Fenced: by the
        lease-checking script."""
        fence = self.fence
        if fence is not None:
            await self._call("ack", lambda: fence.ack(ids))
            return
        command = self._ack_command(ids)

        async def send() -> None:
            replies: list[Any] = []
            await send_pipelined(self.redis, [([command], 1)], replies.extend, key=self.stream)
            if isinstance(replies[0], ResponseError):
                raise replies[0]

        await self._call("ack", send)

    def _ack_command(self, ids: Sequence[bytes]) -> bytes:
        # The head packed once; each id in one format (pack_command's per-argument checks cost
        # ~0.14 us an id, a batch's XACK carries hundreds). Ids are bytes, as the reads return them.
        if self._ack_head is None:
            self._ack_head = pack_command(["XACK", self.stream, self.group]).partition(b"\r\n")[2]
        return b"*%d\r\n%b%b" % (
            len(ids) + 3,
            self._ack_head,
            b"".join([b"$%d\r\n%b\r\n" % (len(i), i) for i in ids]),
        )

    async def position(self) -> tuple[bytes, set[bytes]]:
        """The group's last-delivered id and the ids pending in it (for any consumer): every
        entry up to that id and not pending has been handled and acknowledged."""
        last = b"0-0"
        groups = await self._call("info", lambda: self.redis.xinfo_groups(self.stream))
        for info in groups:
            name = info.get("name")
            if (name.decode() if isinstance(name, bytes) else name) == self.group:
                raw = info.get("last-delivered-id") or b"0-0"
                last = raw if isinstance(raw, bytes) else str(raw).encode()
        pending: set[bytes] = set()
        start: bytes | str = "-"
        while True:
            rows: list[dict[str, Any]] = await self._call(
                "pending",
                lambda first=start: self.redis.xpending_range(  # type: ignore[misc]
                    self.stream, self.group, first, "+", _PAGE
                ),
            )
            pending.update(_as_bytes(r["message_id"]) for r in rows)
            if len(rows) < _PAGE:
                return last, pending
            start = b"(" + _as_bytes(rows[-1]["message_id"])

    async def history(self, after: bytes | str, until: bytes, count: int) -> list[Entry]:
        """Up to ``count`` entries after ``after`` (exclusive; ``"-"``: from the start) up to ``until``."""
        low = after if after == "-" else b"(" + _as_bytes(after)
        reply: Any = await self._call(
            "history", lambda: self.redis.xrange(self.stream, low, until, count=count)
        )
        return list(reply or [])

    def restart_reclaim(self) -> None:
        """Make the next :meth:`reclaim` scan the pending list from its start."""
        self._claim_cursor = "0-0"

    async def backlog(self) -> tuple[int, int]:
        """(entries not yet delivered to the group, entries delivered but not acked)."""
        groups = await self._call("info", lambda: self.redis.xinfo_groups(self.stream))
        mine = next((g for g in groups if reply_text(g.get("name")) == self.group), None)
        if mine is None:
            return 0, 0
        self.last_delivered = _as_bytes(mine.get("last-delivered-id") or b"0-0")
        lag = await self._call("info", lambda: undelivered(self.redis, self.stream, mine))
        return lag, int(mine.get("pending") or 0)

    async def _call(self, operation: str, fn: Callable[[], Awaitable[T]], *, also: str | None = None) -> T:
        async def attempt() -> T:
            try:
                return await fn()
            except ResponseError as exc:
                if not str(exc).startswith("NOGROUP"):
                    raise
                # The group (or the stream) vanished, e.g. a server restarted without its
                # data: recreate it from the start of what the stream holds, then retry.
                await self.ensure_group("0")
                return await fn()

        what = operation if also is None else f"{also}+{operation}"
        return await call_async(
            self.retry, f"{what} {self.stream}", attempt, on_retry=self._retrying(operation, also)
        )

    def _retrying(
        self, operation: str, also: str | None = None
    ) -> Callable[[int, BaseException], None] | None:
        hook = self._on_retry
        if hook is None:
            return None
        if also is None:
            return lambda attempt, exc: hook(operation, attempt, exc)

        def both(attempt: int, exc: BaseException) -> None:
            hook(also, attempt, exc)
            hook(operation, attempt, exc)

        return both


async def undelivered(redis: AsyncClient, stream: str, group: Mapping[str, Any]) -> int:
    """How many entries of ``stream`` are not yet delivered to the group ``group`` describes (its
    ``XINFO GROUPS`` row).

    Redis's own ``lag`` is taken when it is 0. Otherwise it may be wrong: it is unknown (``None``)
    after deletions, and up to Redis 7.4 it stays too high, by the entries trimmed before the
    group read them, even once the group has read everything (redis/redis#13957). So the
    stream is asked: a group that has delivered its last entry has none left, and the stream's
    length bounds the rest."""
    lag = group.get("lag")
    if lag == 0:
        return 0
    info = await redis.xinfo_stream(stream)
    if _as_bytes(group.get("last-delivered-id") or b"0-0") == _as_bytes(info["last-generated-id"]):
        return 0
    length = int(info["length"])
    return length if lag is None else min(int(lag), length)


async def group_backlog(redis: AsyncClient, stream: str, group: str) -> int:
    """Entries of ``stream`` the group has not finished: undelivered (lag) plus pending."""
    try:
        groups = await redis.xinfo_groups(stream)
    except ResponseError:
        return 0  # no stream yet: nothing to do
    for info in groups:
        if reply_text(info["name"]) == group:
            return await undelivered(redis, stream, info) + int(info["pending"])
    return await redis.xlen(stream)  # group not created yet: everything is waiting


_PAGE = 1_000


def _as_bytes(value: bytes | str) -> bytes:
    return value if isinstance(value, bytes) else value.encode("ascii")


def id_key(entry_id: bytes) -> tuple[int, int]:
    """A stream id as numbers, for comparing (``b"10-2" > b"9-5"``, unlike the bytes)."""
    ms, _, seq = entry_id.partition(b"-")
    return int(ms), int(seq or 0)
