"""Who owns which partition: leases in Redis, renewed by their owner, and a live-member list.

A partition of a service's input is read by one instance at a time. Its owner holds
the lease ``KeySpace.lease(service, p)``: a key whose value is the owner's instance
name, set with ``SET NX PX ttl`` and renewed by a compare-and-set script (only the
owner's value is extended). An owner that dies stops renewing; its leases expire
after ``ttl`` and a live instance takes them. A cleanly stopping owner deletes its
leases (compare-and-delete) so the partitions move at once.

Who should own what is decided the same way in every instance from one shared
fact, the sorted list of live members (``KeySpace.members(service)``: a sorted set
scored with each member's expiry in the server's clock, refreshed by a script that
reads ``TIME`` on the node that holds it): partition ``p`` belongs to member
``p mod len(members)``. During a change (a member joining or dying) two instances
may both want a partition for a moment; the lease decides.

Every script touches one key, so all of it is cluster-safe. A lease is not a fencing
token: an owner paused for longer than ``ttl`` (GC, a frozen VM) may still finish a
batch after a new owner started; the services dedupe on message ids, so that shows
as duplicates, never as a loss (docs/scaling.md).
"""

from __future__ import annotations

from core.redis.modes import AsyncClient, reply_text
from core.topics import KeySpace, ServiceName

__all__ = ["RELEASE_IF_OWNER", "TAKE_OR_EXTEND", "PartitionLeases", "desired_partitions"]

TAKE_OR_EXTEND = """
local v = redis.call('GET', KEYS[1])
if v == false then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
if v == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""
"""Script: KEYS[1] a token key, ARGV[1] the owner's token, ARGV[2] ttl ms. Take it if free or extend
one's own (1); 0 if another owner holds it."""
# Extend only a lease still held: a lease that expired meanwhile is lost (someone may
# have taken the partition and moved on); the owner must stop and acquire it anew.
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
RELEASE_IF_OWNER = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""
"""Script: KEYS[1] a token key, ARGV[1] the owner's token. Delete it only if this owner holds it."""
# KEYS[1] members zset, ARGV[1] member ('' = only read), ARGV[2] ttl ms, ARGV[3] '1' = leave.
_MEMBERS = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if ARGV[3] == '1' then
  redis.call('ZREM', KEYS[1], ARGV[1])
elseif ARGV[1] ~= '' then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
  redis.call('PEXPIRE', KEYS[1], 10 * tonumber(ARGV[2]))
end
return redis.call('ZRANGE', KEYS[1], 0, -1)
"""


def desired_partitions(members: list[str], me: str, partitions: int) -> set[int]:
    """The partitions ``me`` should own when ``members`` (any order) are alive: ``p`` goes to
    the ``p mod k``-th of the sorted members; nothing if ``me`` is not among them."""
    ordered = sorted(set(members))
    if me not in ordered:
        return set()
    return {p for p in range(partitions) if ordered[p % len(ordered)] == me}


class PartitionLeases:
    """The lease and membership commands of one instance of one service."""

    def __init__(
        self, redis: AsyncClient, keys: KeySpace, service: ServiceName, instance: str, ttl_ms: int
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.service = service
        self.instance = instance
        self.ttl_ms = ttl_ms

    async def heartbeat(self) -> list[str]:
        """Announce this instance as alive for ``ttl_ms``; returns every live member, sorted."""
        return await self._members(self.instance, leave=False)

    async def members(self) -> list[str]:
        """Every live member, sorted (without announcing this instance)."""
        return await self._members("", leave=False)

    async def leave(self) -> None:
        """Withdraw this instance from the members at once (clean shutdown)."""
        await self._members(self.instance, leave=True)

    async def acquire(self, partition: int) -> bool:
        """Take ``partition``'s lease if it is free (or already this instance's); True if held now."""
        return await self._script(TAKE_OR_EXTEND, partition) == 1

    async def renew(self, partition: int) -> bool:
        """Extend this instance's lease; False if it is no longer this instance's."""
        return await self._script(_RENEW, partition) == 1

    async def release(self, partition: int) -> bool:
        """Delete the lease if this instance holds it; True if it did."""
        return await self._script(RELEASE_IF_OWNER, partition) == 1

    async def owner(self, partition: int) -> str | None:
        """The instance holding ``partition``'s lease now, if any."""
        raw = await self.redis.get(self.keys.lease(self.service, partition))
        return None if raw is None else reply_text(raw)

    async def _script(self, script: str, partition: int) -> int:
        key = self.keys.lease(self.service, partition)
        reply = await self.redis.eval(script, 1, key, self.instance, str(self.ttl_ms))
        return int(reply or 0)

    async def _members(self, member: str, *, leave: bool) -> list[str]:
        key = self.keys.members(self.service)
        reply = await self.redis.eval(_MEMBERS, 1, key, member, str(self.ttl_ms), "1" if leave else "0")
        return sorted(reply_text(m) for m in reply or [])
