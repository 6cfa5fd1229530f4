"""One live process per instance name: a second ``cdb service`` with a running one's
``INSTANCE`` is refused at start.

Two processes with one name would both pass every lease check (a lease holds a name, not
a process) and both own every partition the name owns. So at start a process claims
``KeySpace.instance_claim(service, instance)`` with ``SET NX PX`` and a token of its own
(host, pid, random); the status reporter refreshes it (compare-and-set: only the token's
holder extends it) and a clean stop deletes it (compare-and-delete). A process that died
leaves the claim until its TTL passes (a few status intervals), so a restart under the
same name waits at most that long (:meth:`InstanceClaim.take` retries until then).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator

from core.errors import ConfigError
from core.logging import get_logger
from core.redis.leases import RELEASE_IF_OWNER, TAKE_OR_EXTEND
from core.redis.modes import AsyncClient, reply_text
from core.topics import KeySpace, ServiceName

__all__ = ["InstanceClaim", "claimed"]

_log = get_logger("core.redis.instance_claim")

# A claim is taken, extended and given back exactly like a partition lease (an owner token with a
# TTL): core.redis.leases' scripts serve both.


class InstanceClaim:
    """The claim of one process on its instance name (see the module docstring)."""

    def __init__(
        self, redis: AsyncClient, keys: KeySpace, service: ServiceName, instance: str, ttl_ms: int
    ) -> None:
        self.redis = redis
        self.key = keys.instance_claim(service, instance)
        self.instance = instance
        self.ttl_ms = max(1000, ttl_ms)
        self.token = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

    async def take(self, wait_s: float = 0.0) -> None:
        """Claim the name; :class:`ConfigError` naming ``INSTANCE`` if another live process
        holds it after ``wait_s`` (a process that just died frees it within the TTL)."""
        deadline = time.monotonic() + wait_s
        while True:
            if await self.redis.set(self.key, self.token, nx=True, px=self.ttl_ms):
                return
            holder = await self.redis.get(self.key)
            if holder is None:
                continue  # expired between the two commands: try again at once
            if time.monotonic() >= deadline:
                ttl = await self.redis.pttl(self.key)
                raise ConfigError(
                    "INSTANCE",
                    self.instance,
                    ["a name no live process of this service uses"],
                    f"a live process already runs as {self.instance} ({reply_text(holder)}, {self.key}, "
                    f"claim refreshed while it runs, expires in {max(int(ttl), 0)} ms if it died); "
                    "two processes with one name would both own its partitions",
                )
            await asyncio.sleep(min(0.2, max(0.0, deadline - time.monotonic())))

    async def refresh(self) -> bool:
        """Extend the claim; False if this process no longer holds it (it expired and another
        process took the name: this one must stop)."""
        return int(await self.redis.eval(TAKE_OR_EXTEND, 1, self.key, self.token, str(self.ttl_ms)) or 0) == 1

    async def release(self) -> None:
        """Give the name back (clean stop)."""
        await self.redis.eval(RELEASE_IF_OWNER, 1, self.key, self.token)


@contextlib.asynccontextmanager
async def claimed(claim: InstanceClaim, stop: asyncio.Event, *, wait_s: float) -> AsyncIterator[None]:
    """Hold ``claim`` for the block: taken at entry (see :meth:`InstanceClaim.take`), refreshed
    every third of its TTL, given back at exit. If it is lost meanwhile (this process was
    frozen past the TTL and another took the name) ``stop`` is set: two must not run."""

    async def keep() -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=claim.ttl_ms / 3000)
            if stop.is_set():
                return
            try:
                held = await claim.refresh()
            except Exception as exc:  # Redis away: the claim's TTL decides, try again next tick
                _log.warning("instance.claim_refresh_failed", instance=claim.instance, error=str(exc))
                continue
            if not held:
                _log.error("instance.claim_lost", instance=claim.instance, key=claim.key)
                stop.set()

    await claim.take(wait_s)
    task = asyncio.create_task(keep())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(BaseException):
            await task
        with contextlib.suppress(Exception):
            await claim.release()
