"""A replay's lock taken from under it partway, as after a pause past its TTL (specs of
``cdb dlq replay`` and ``cdb dlq catch-up`` that lose their lock)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

import redis

from core.redis.dlq_lock import ReplayLock
from core.topics import KeySpace, Topic

__all__ = ["overtaken_after_first"]

T = TypeVar("T")


def overtaken_after_first(
    call: Callable[..., T], client: redis.Redis, keys: KeySpace, topic: Topic
) -> tuple[Callable[..., T], list[ReplayLock]]:
    """``call`` wrapped so that, after its first return, another replay takes ``topic``'s lock
    (the second item of the pair holds it, once taken) and waits long enough for a holder
    renewing every 100 ms (a 300-ms TTL) to find it taken."""
    others: list[ReplayLock] = []

    def overtaken(*args: Any, **kwargs: Any) -> T:
        result = call(*args, **kwargs)
        if not others:
            client.delete(keys.dlq_replay_lock(topic))
            others.append(ReplayLock(client, keys, topic, ttl_ms=10_000))
            others[0].take()
            time.sleep(0.5)
        return result

    return overtaken, others
