"""Outputs sent under the lease they come from: the lease check and the writes in one step.

A fenced consumer (:mod:`core.redis.fence`) must not send the outputs of a batch whose
partition lease it lost. Checking the lease with a ``GET`` and then sending the outputs costs a
round trip of its own and leaves a window between the two (a pause there lets a stale owner's
outputs through: duplicates of the new owner's, deduplicated downstream). On a single server
(standalone or a Sentinel primary) the check can instead run *inside* the write: one script per
output stream compares the lease with the owner and only then appends every output (``PUBLISH``
then ``XADD``, as the plain pipeline sends them). No round trip of its own, and no window: a
stale owner's outputs are refused by the server.

A Redis Cluster puts a partition's lease (in its input stream's slot) and the output streams in
different slots, which one script may not touch together; there the lease is read first
(:meth:`LeaseGuard.check`), as before.

A script stops at the first command Redis refuses (the outputs before it stay written, as in a
pipeline whose later command is refused); the whole flush then raises
:class:`~core.errors.TransportError`, nothing of the batch is acknowledged, and its redelivery
makes the same outputs again (at least once, as for any failed flush).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from core.errors import LeaseLostError, TransportError
from core.redis.modes import AsyncClient, is_cluster, reply_text
from core.redis.scripts import LuaScript
from core.redis.wire import send_one

__all__ = ["GUARDED_PUBLISH", "LeaseGuard", "guarded_args", "guarded_ids", "script_guard"]

# KEYS[1] the lease, KEYS[2] the output stream; ARGV[1] owner, ARGV[2] channel, ARGV[3] n, then
# n trim arguments, then per output: its body, 2k, and its k field names and values.
_GUARDED = """
local holder = redis.call('GET', KEYS[1])
if holder ~= ARGV[1] then
  return {0, holder or ''}
end
local n = tonumber(ARGV[3])
local head = {KEYS[2]}
for i = 4, 3 + n do head[#head + 1] = ARGV[i] end
head[#head + 1] = '*'
local ids = {}
local i = 4 + n
while i <= #ARGV do
  local k = tonumber(ARGV[i + 1])
  local args = {unpack(head)}
  for j = i + 2, i + 1 + k do args[#args + 1] = ARGV[j] end
  redis.call('PUBLISH', ARGV[2], ARGV[i])
  ids[#ids + 1] = redis.call('XADD', unpack(args))
  i = i + 2 + k
end
return {1, ids}
"""
GUARDED_PUBLISH = LuaScript(_GUARDED)
"""Publishes outputs only while a lease is held (one call per output stream and chunk)."""


@dataclass(frozen=True, slots=True)
class LeaseGuard:
    """The lease a batch's outputs are sent under: ``lease`` (key) must hold ``owner``;
    ``stream`` names the partition it fences (for the error)."""

    lease: str
    owner: str
    stream: str

    async def check(self, redis: AsyncClient) -> None:
        """Raise :class:`LeaseLostError` unless the lease is ``owner``'s now (one ``GET``)."""
        holder = await send_one(redis, ["GET", self.lease], self.lease)
        if isinstance(holder, Exception):
            raise holder
        if holder is None or reply_text(holder) != self.owner:
            raise self.lost(reply_text(holder) if holder is not None else "nobody")

    def lost(self, holder: str) -> LeaseLostError:
        """The error of a flush refused because ``holder`` holds the lease, not ``owner``."""
        return LeaseLostError(
            f"{self.owner} no longer holds the lease of {self.stream} (held by {holder}): outputs not sent"
        )


async def script_guard(
    guard: LeaseGuard | None, redis: AsyncClient, *, scripts: bool = True
) -> LeaseGuard | None:
    """The guard the writing scripts check, or ``None`` once the lease was read here (a ``GET``,
    :class:`LeaseLostError` if it is lost) because no script can check it: on a cluster the
    lease lives in another slot than what is written; ``scripts`` false, the server runs no Lua
    (embedded)."""
    if guard is not None and (is_cluster(redis) or not scripts):
        await guard.check(redis)
        return None
    return guard


def guarded_args(
    guard: LeaseGuard,
    stream: str,
    channel: str,
    trim: Sequence[str],
    outputs: Sequence[tuple[bytes, dict[str, str], Any] | tuple[bytes, dict[str, str], Any, Any]],
) -> list[str | bytes]:
    """The keys and arguments of one :data:`GUARDED_PUBLISH` call (2 keys) appending
    ``outputs`` (body, fields, ...) to ``stream`` and publishing them on ``channel``."""
    args: list[str | bytes] = [guard.lease, stream, guard.owner, channel, str(len(trim)), *trim]
    for output in outputs:
        fields = output[1]
        args += (output[0], str(2 * len(fields)))
        for name, value in fields.items():
            args += (name, value)
    return args


def guarded_ids(guard: LeaseGuard, topic: str, replies: Sequence[Any]) -> list[str]:
    """The stream ids of the outputs of guarded calls, from their ``replies`` in order. Raises
    :class:`LeaseLostError` when the server refused a call for the lease (the calls before it
    were written), :class:`TransportError` when it refused one otherwise."""
    ids: list[str] = []
    for reply in replies:
        if isinstance(reply, Exception):
            raise TransportError(f"Redis refused a publish to {topic}: {reply}")
        if not reply or int(reply[0]) != 1:
            holder = reply_text(reply[1]) if len(reply) > 1 else ""
            raise guard.lost(holder or "nobody")
        ids += (reply_text(stream_id) for stream_id in reply[1])
    return ids
