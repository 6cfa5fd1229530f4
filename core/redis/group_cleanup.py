"""Removing dead consumers from consumer groups, so they do not pile up.

Every instance is a consumer named after itself (``INSTANCE``, by default
``<hostname>-<pid>``), so each restart or recreated container adds a consumer to its
service's group on every partition stream it ever read, and Redis keeps them forever:
``XINFO CONSUMERS`` (and ``cdb status``'s view of a group) fills with names that will
never read again.

Two ways out, both only for a consumer with **nothing pending** (deleting a consumer
drops its pending entries from the group, and they would never be redelivered):

- :meth:`GroupJanitor.leave`, on a clean stop after the last batch was acknowledged:
  the instance deletes its own consumer from each stream's group.
- :meth:`GroupJanitor.sweep`, at a low rate while running: any other consumer idle
  longer than ``idle_ms`` (``DEAD_CONSUMER_IDLE_MS``, default one hour; a live consumer
  polls every ``CONSUMER_BLOCK_MS``, at most 5 s) is deleted. Its pending count is read
  again just before ``XGROUP DELCONSUMER``, so the only race left is a consumer idle for
  an hour that reads within that one round trip; a consumer killed with pending entries
  keeps them until ``XAUTOCLAIM`` moved them to a live one, then goes on the next sweep.

Single-key commands only (cluster-safe). Best effort: a failure is logged and retried
on the next sweep; it never stops the service.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any

from redis.exceptions import RedisError

from core.errors import TransportError
from core.logging import get_logger
from core.redis.modes import AsyncClient, reply_text

__all__ = ["DEFAULT_SWEEP_INTERVAL_S", "GroupJanitor"]

DEFAULT_SWEEP_INTERVAL_S = 300.0
"""How often a running instance sweeps its groups (one ``XINFO CONSUMERS`` per stream)."""

_TROUBLE = (RedisError, OSError, TransportError)
_log = get_logger("core.redis.group_cleanup")


class GroupJanitor:
    """Keeps the consumer group ``group`` of ``streams`` free of dead consumers (see module)."""

    def __init__(
        self,
        redis: AsyncClient,
        streams: Sequence[str],
        group: str,
        instance: str,
        *,
        idle_ms: int,
        interval_s: float = DEFAULT_SWEEP_INTERVAL_S,
    ) -> None:
        self.redis = redis
        self.streams = list(streams)
        self.group = group
        self.instance = instance
        self.idle_ms = idle_ms
        self.interval_s = interval_s
        self.removed = 0
        """Consumers this janitor deleted, its own included."""

    async def sweep(self) -> list[str]:
        """Delete every other consumer idle at least ``idle_ms`` with nothing pending; returns
        ``stream/consumer`` of each one deleted. ``idle_ms`` 0 disables the sweep."""
        if self.idle_ms <= 0:
            return []
        gone: list[str] = []
        for stream in self.streams:
            for info in await self._consumers(stream):
                name = reply_text(info.get("name", b""))
                if (
                    name == self.instance
                    or int(info.get("pending", 1))
                    or int(info.get("idle", 0)) < self.idle_ms
                ):
                    continue
                if await self._delete_if_idle(stream, name):
                    gone.append(f"{stream}/{name}")
                    _log.info("group.consumer_removed", stream=stream, group=self.group, consumer=name)
        return gone

    async def leave(self) -> list[str]:
        """Delete this instance's own consumer from each stream's group where it has nothing
        pending (after a clean stop); returns the streams it left."""
        left = []
        for stream in self.streams:
            with contextlib.suppress(*_TROUBLE):
                if await self._delete_if_idle(stream, self.instance):
                    left.append(stream)
        if left:
            _log.info("group.left", group=self.group, consumer=self.instance, streams=len(left))
        return left

    async def run(self, stop: asyncio.Event) -> None:
        """Sweep now and then every ``interval_s`` until ``stop`` is set; never raises."""
        while not stop.is_set():
            try:
                await self.sweep()
            except _TROUBLE as exc:
                _log.warning("group.sweep_failed", group=self.group, error=str(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.interval_s)

    async def _consumers(self, stream: str) -> list[dict[str, Any]]:
        try:
            return list(await self.redis.xinfo_consumers(stream, self.group))
        except RedisError as exc:
            if "NOGROUP" in str(exc) or "no such key" in str(exc):
                return []  # no group (yet) on that stream: nothing to clean
            raise

    async def _delete_if_idle(self, stream: str, consumer: str) -> bool:
        # Read its pending entries right before deleting: DELCONSUMER would drop them.
        pending = await self.redis.xpending_range(
            stream, self.group, min="-", max="+", count=1, consumername=consumer
        )
        if pending:
            return False
        await self.redis.xgroup_delconsumer(stream, self.group, consumer)
        self.removed += 1
        return True
