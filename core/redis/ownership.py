"""Which partitions of a consuming service no live instance owns, and what waits in them.

Each instance reports the partitions it owns (:attr:`core.status.LiveState.owned`) and the
backlog of those alone. A partition whose owner stopped, hung or crashed, or that sits between
two leases, is in no instance's lag; :func:`unowned_partitions` finds such partitions from the
last reports and asks Redis what their streams hold for the service's group (``cdb status``,
the dashboard).
"""

from __future__ import annotations

from dataclasses import dataclass

from core.redis.consumer_io import group_backlog
from core.redis.modes import AsyncClient
from core.status import LiveState
from core.topics import KeySpace, ServiceName

__all__ = ["Unowned", "unowned_partitions"]


@dataclass(frozen=True, slots=True)
class Unowned:
    """The partitions of one consuming service that no live instance owns (by their last
    reports: none running, or stopped, stale, between leases), and what waits there."""

    service: str
    partitions: list[int]
    waiting: int
    """Entries of those partitions' streams the service's group has not finished (undelivered
    plus pending): in no instance's lag, since no instance reads them."""


async def unowned_partitions(
    client: AsyncClient, keys: KeySpace, states: list[LiveState], at_ms: int
) -> list[Unowned]:
    """Per consuming service with reported instances, the partitions of ``keys`` (its partition
    count) that no live instance of it owns, with their backlog; services whose every partition
    has a live owner are left out."""
    found = []
    for name in dict.fromkeys(s.service for s in states if not s.is_comparator):
        try:
            service = ServiceName(name)
        except ValueError:
            continue
        topic = service.consumes
        if topic is None:
            continue
        mine = [s for s in states if s.service == name and not s.is_comparator]
        owned = {p for s in mine if s.is_live(at_ms) for p in s.owned}
        free = [p for p in range(keys.partitions) if p not in owned]
        if free:
            group = keys.group(service)
            waiting = sum([await group_backlog(client, keys.stream(topic, p), group) for p in free])
            found.append(Unowned(name, free, waiting))
    return found
