"""Fenced group commands: nothing is taken from or acknowledged on a partition whose lease
this instance does not hold at that moment.

A partition's owner holds its lease (:mod:`core.redis.leases`). Holding it when a batch
started is not enough: an instance frozen past the lease (SIGSTOP, a GC pause, a frozen VM)
resumes with its socket reads and retries still queued, and a re-sent ``XREADGROUP >``
would take fresh entries from under the new owner. So every command that moves entries
(``XREADGROUP`` new or own-pending, ``XAUTOCLAIM``) or acknowledges them (``XACK``) runs in
one script that first compares the lease with this instance's name: the check and the
command are one atomic step on the server, so no delay between them (a pause, a lost reply
and its retry) can let a stale owner through. The lease key shares the stream's cluster
slot (:meth:`core.topics.KeySpace.lease`), so this works on a cluster too.

Waiting for new entries uses a plain ``XREAD BLOCK`` with no group: it moves nothing, so
a re-sent wait (redis-py's retry after a pause) is harmless; the entries are then taken by
the fenced read, pipelined right behind the wait (:meth:`Fence.wait_and_read`: the server
runs it the moment the wait ends, so waking costs no round trip of its own). A refused
command raises :class:`~core.errors.LeaseLostError`.

**A read of new entries is safe to send twice.** ``XREADGROUP >`` moves what it returns into
the consumer's pending list; if its reply is lost (the connection torn down after the server
ran it) and the read is sent again, by the transport's retry or by redis-py's own (its
cluster client re-sends a command whose connection it closed itself, e.g. while refreshing
its slot map on the ``MOVED`` replies of a fail-over), a plain second read would take the
*next* entries and leave the first ones behind, to be handled after newer ones, out of
order. So the script is given the newest id this consumer received, and when the
consumer's pending list holds entries after it (delivered, never received), it returns
those again, flagged, instead of taking new ones: whichever layer re-sends the read, the
caller receives every entry once, in id order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from core.codec.fields import fields_of_flat
from core.errors import GroupRewoundError, LeaseLostError
from core.redis.guarded import LeaseGuard
from core.redis.modes import AsyncClient, reply_text
from core.redis.scripts import LuaScript, is_noscript
from core.redis.wire import pack_command, send_one, send_pipelined

__all__ = ["FENCED_SCRIPT", "Fence", "FencedRead", "FencedReply"]

FencedReply = Any
"""The raw RESP2 reply of the fenced command (converted from Lua: flat field lists)."""

# KEYS[1] lease, KEYS[2] stream; ARGV[1] owner, ARGV[2] operation, ARGV[3..] its arguments.
# A read of new entries may carry ids to acknowledge first (ARGV[8..]): the batch before it,
# settled, acknowledged in the read's round trip under the same lease check.
# Returns {0} when the lease is not ARGV[1]'s (nothing acknowledged), {2, last-delivered}
# when the group is behind what this owner took, {3, reply} for entries delivered to this
# consumer after the newest id it received (a read whose reply was lost), else {1, reply}
# ({1, false, last id} for an empty read of new entries: the id to wait after).
_FENCED = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return {0}
end
local op = ARGV[2]
if op == 'read' and #ARGV > 7 then
  redis.call('XACK', KEYS[2], ARGV[3], unpack(ARGV, 8))
end
local function older(a, b)
  local ams, aseq = string.match(a, '^(%d+)-(%d+)$')
  local bms, bseq = string.match(b, '^(%d+)-(%d+)$')
  ams, aseq, bms, bseq = tonumber(ams), tonumber(aseq), tonumber(bms), tonumber(bseq)
  return ams < bms or (ams == bms and aseq < bseq)
end
if op == 'read' and ARGV[7] and ARGV[7] ~= '0-0' and redis.call('EXISTS', KEYS[2]) == 1 then
  -- ARGV[7]: the newest id this owner took. The group's last-delivered id never goes back
  -- by itself: behind it, the server lost writes; say so before anything new is taken.
  for _, g in ipairs(redis.call('XINFO', 'GROUPS', KEYS[2])) do
    local name, last
    for i = 1, #g, 2 do
      if g[i] == 'name' then name = g[i + 1] elseif g[i] == 'last-delivered-id' then last = g[i + 1] end
    end
    if name == ARGV[3] and older(last, ARGV[7]) then
      return {2, last}
    end
  end
end
if op == 'read' and ARGV[6] == '>' and ARGV[7] then
  -- ARGV[7]: the newest id this consumer received. Entries pending for it after that id were
  -- delivered by a read whose reply never arrived: hand them over before anything new.
  local mine = redis.call('XREADGROUP', 'GROUP', ARGV[3], ARGV[4], 'COUNT', ARGV[5],
                          'STREAMS', KEYS[2], ARGV[7])
  if mine and mine[1] and #mine[1][2] > 0 then
    return {3, mine}
  end
end
if op == 'read' then
  local reply = redis.call('XREADGROUP', 'GROUP', ARGV[3], ARGV[4], 'COUNT', ARGV[5],
                           'STREAMS', KEYS[2], ARGV[6])
  if (not reply) and ARGV[6] == '>' then
    local last = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
    local id = '0-0'
    if last[1] then id = last[1][1] end
    return {1, false, id}
  end
  return {1, reply}
elseif op == 'claim' then
  return {1, redis.call('XAUTOCLAIM', KEYS[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], 'COUNT', ARGV[7])}
elseif op == 'ack' then
  return {1, redis.call('XACK', KEYS[2], ARGV[3], unpack(ARGV, 4))}
end
return redis.error_reply('unknown fenced operation ' .. op)
"""
FENCED_SCRIPT = LuaScript(_FENCED)
"""The fence's one script (every fenced read, claim and acknowledgement runs it)."""


def _fields(flat: Any) -> dict[bytes, bytes]:
    if not flat:
        return {}
    if len(flat) % 2:
        raise ValueError(f"a stream entry's field list has an odd length ({len(flat)})")
    pairs = iter(flat)  # names and values alternate: one iterator zipped with itself pairs them
    fields = dict(zip(pairs, pairs, strict=False))  # even length: checked above
    # Shorter than the pairs: a name came twice; kept whole, for every codec to refuse.
    return fields if len(fields) * 2 == len(flat) else fields_of_flat(flat)


def _read_of(reply: Sequence[Any]) -> FencedRead:
    """A fenced read's accepted reply (``{1 or 3, batches}``, or ``{1, false, last id}``)."""
    batches = reply[1] if len(reply) > 1 else None
    if not batches:
        return FencedRead([], reply[2] if len(reply) > 2 else None)
    return FencedRead(entries_of(batches[0][1]), recovered=int(reply[0]) == 3)


def entries_of(raw: Any) -> list[tuple[bytes, dict[bytes, bytes]]]:
    """``[[id, [f, v, ...] or nil], ...]`` as (id, fields) pairs; a deleted entry has no fields."""
    return [(row[0], _fields(row[1] if len(row) > 1 else None)) for row in raw or []]


@dataclass(frozen=True, slots=True)
class FencedRead:
    """What a fenced read returned.

    ``entries``: in id order. ``wait_after``: for an empty read of new entries, the stream's
    last id (what to wait after), else ``None``. ``recovered``: the entries were delivered to
    this consumer before, by a read whose reply was lost (they are pending for it; see the
    module docstring), not taken new now."""

    entries: list[tuple[bytes, dict[bytes, bytes]]]
    wait_after: bytes | None = None
    recovered: bool = False


class Fence:
    """The fenced commands of one instance on one partition stream of its group."""

    def __init__(self, redis: AsyncClient, *, lease: str, stream: str, group: str, owner: str) -> None:
        self.redis = redis
        self.lease = lease
        self.stream = stream
        self.group = group
        self.owner = owner

    async def _run(self, *args: str | bytes | int) -> list[Any]:
        reply = await FENCED_SCRIPT.run(self.redis, 2, self.lease, self.stream, self.owner, *args)
        return await self._accepted(reply, args)

    async def _accepted(self, reply: Any, args: Sequence[str | bytes | int]) -> list[Any]:
        """The script's reply to ``args``, or the refusal it stands for raised."""
        if reply and int(reply[0]) == 2:
            last, taken = reply_text(reply[1]), reply_text(args[-1])
            raise GroupRewoundError(
                f"{self.stream}: the group's last-delivered id {last} is behind {taken}, which "
                f"{self.owner} already took: the server lost the entries after {last} (older snapshot or "
                "a replica that was behind); state is rebuilt from what the stream holds"
            )
        if not reply or int(reply[0]) not in (1, 3):
            holder = await self.redis.get(self.lease)
            held_by = reply_text(holder) if holder is not None else "nobody"
            raise LeaseLostError(
                f"{self.owner} no longer holds the lease of {self.stream} "
                f"(held by {held_by}): nothing read or acknowledged"
            )
        return list(reply)

    async def read(
        self,
        consumer: str,
        count: int,
        start: bytes | str,
        *,
        taken: bytes | None = None,
        ack: Sequence[bytes] = (),
    ) -> FencedRead:
        """XREADGROUP (no BLOCK) from ``start`` (``>``: new entries, own pending entries: an id).

        ``ack`` (new entries only): ids acknowledged first, in the same script and under the same
        lease check; when this returns they are acknowledged, when it raises
        :class:`LeaseLostError` none is (an ``XACK`` is safe to send again after other errors).

        For new entries, ``taken`` is the newest id this consumer received before (``None``:
        none yet). A group whose last-delivered id is behind it lost writes
        (:class:`GroupRewoundError`, before anything is taken); entries pending for this
        consumer after it are returned again, ``recovered``, instead of new ones, so a read
        sent twice (its first reply lost) delivers nothing out of order."""
        if start in (">", b">"):
            reply = await self._run("read", self.group, consumer, count, start, taken or "0-0", *ack)
        else:
            if ack:
                raise ValueError("only a read of new entries carries acknowledgements")
            reply = await self._run("read", self.group, consumer, count, start)
        return _read_of(reply)

    async def wait_and_read(
        self,
        consumer: str,
        count: int,
        after: bytes,
        block_ms: int,
        *,
        taken: bytes | None = None,
        ack: Sequence[bytes] = (),
    ) -> FencedRead:
        """Wait up to ``block_ms`` for an entry after ``after`` with a group-less ``XREAD BLOCK``
        (it moves nothing), then :meth:`read` new entries, both in one round trip: the server
        holds a blocked client's next command until the wait ends, so the read runs the moment
        an entry arrives (or the wait times out: then it finds what came meanwhile, often
        nothing), without a second round trip from here.

        ``ack``: ids acknowledged before the wait, in the same round trip and under the same
        lease check (:meth:`ack`): a consumer that caught up settles its last batch and waits
        for the next in one round trip, and holds nothing pending while it waits. When this
        returns they are acknowledged; when it raises :class:`LeaseLostError` none is (after
        other errors they may be: an ``XACK`` is safe to send again).

        If the reply is lost (a stop cancelling the wait, a dropped connection), entries the read
        took are pending for ``consumer`` after ``taken``: the next read returns them first, as
        after any lost read (see the module docstring)."""
        args = ("read", self.group, consumer, count, ">", taken or "0-0")
        wait: list[str | bytes] = ["XREAD", "COUNT", "1", "BLOCK", str(block_ms)]
        wait += ["STREAMS", self.stream, after]
        read = FENCED_SCRIPT.command(2, self.lease, self.stream, self.owner, *args)
        commands = [pack_command(wait), pack_command(read)]
        acked: tuple[str | bytes, ...] = ("ack", self.group, *ack)
        if ack:
            settle = FENCED_SCRIPT.command(2, self.lease, self.stream, self.owner, *acked)
            commands.insert(0, pack_command(settle))
        replies: list[Any] = []
        await send_pipelined(self.redis, [(commands, len(commands))], replies.extend, key=self.stream)
        if ack:
            if is_noscript(replies[0]):  # nothing of the script ran: acknowledge with the source
                await self.ack(ack)
            elif isinstance(replies[0], Exception):
                raise replies[0]  # e.g. NOGROUP: the read's own reply is the same error
            else:
                await self._accepted(replies[0], acked)  # refused: the read was refused too
        reply = replies[-1]
        if is_noscript(reply):  # nothing of it ran; the wait is over: the read alone, with the source
            source = FENCED_SCRIPT.source_command(2, self.lease, self.stream, self.owner, *args)
            reply = await send_one(self.redis, source, self.stream)
        if isinstance(reply, Exception):
            raise reply  # e.g. NOGROUP (the caller recreates the group); the wait's own error is this one's
        return _read_of(await self._accepted(reply, args))

    async def claim(self, consumer: str, min_idle_ms: int, start: bytes | str, count: int) -> tuple[Any, Any]:
        """XAUTOCLAIM; returns (next cursor, entries)."""
        reply = (await self._run("claim", self.group, consumer, min_idle_ms, start, count))[1]
        return reply[0], entries_of(reply[1])

    async def ack(self, ids: Sequence[bytes]) -> int:
        """XACK ``ids``; how many were pending. An error reply (e.g. ``NOGROUP``) is raised as
        redis-py raises it. (Packed by :mod:`core.redis.wire`, like every fenced call: redis-py's
        own packer costs about 1 us per argument, and a batch acknowledges hundreds.)"""
        return int((await self._run("ack", self.group, *ids))[1] or 0)

    async def check(self) -> None:
        """Raise :class:`LeaseLostError` unless the lease is this instance's now."""
        await self.guard.check(self.redis)

    @property
    def guard(self) -> LeaseGuard:
        """This lease, for outputs sent under it (:mod:`core.redis.guarded`)."""
        return LeaseGuard(self.lease, self.owner, self.stream)
