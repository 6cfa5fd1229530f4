"""Which contract versions a running instance reads and writes, and the live producer gate.

Every instance reports ``reads`` (its input topic -> versions it can decode) and ``writes`` (its
output topic -> the version it writes) in its live state (:class:`core.status.LiveState`). Before
a producer starts writing, :func:`check_producer` reads the live states of the pipeline and
refuses (a :class:`~core.errors.ConfigError` naming ``PRODUCE_VERSION_<TOPIC>``) a version that a
running consumer of the topic cannot read: consumers upgrade first, then producers.
"""

from __future__ import annotations

import contextlib
from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from core.errors import ConfigError
from core.redis.retry import RetryPolicy, call_async
from core.status import LiveState
from core.topics import KeySpace, ServiceName, Topic
from core.versions.declaration import BASE_VERSION, known_versions

if TYPE_CHECKING:
    from core.redis.modes import AsyncClient

__all__ = [
    "check_consumer",
    "check_producer",
    "consumer_states",
    "producer_states",
    "readable_by",
    "seen_by",
    "unreadable",
    "versions_of",
]


@runtime_checkable
class _Versioned(Protocol):
    def reads(self, topic: Topic) -> list[str]: ...

    def writes(self, topic: Topic) -> str: ...


def versions_of(service: ServiceName, codec: object) -> tuple[dict[str, list[str]], dict[str, str]]:
    """``(reads, writes)`` of an instance of ``service`` using ``codec``.

    A codec that is not versioned (the legacy path) reads and writes v1.0 only: it ignores a
    later version's new fields but would misread a renamed or retyped one, so it claims nothing more.
    """
    consumes, produces = service.consumes, service.produces
    codec = getattr(codec, "primary", codec)  # a shadow codec acts on its primary's result
    reads: dict[str, list[str]] = {}
    if isinstance(codec, _Versioned):
        if consumes is not None:
            reads[consumes.value] = codec.reads(consumes)
        return reads, {produces.value: codec.writes(produces)}
    if consumes is not None:
        reads[consumes.value] = [BASE_VERSION]
    return reads, {produces.value: BASE_VERSION}


def seen_by(codec: object) -> dict[str, dict[str, int]]:
    """Per input topic, when ``codec`` last decoded each version (epoch ms); empty when unversioned."""
    codec = getattr(codec, "primary", codec)
    seen = getattr(codec, "seen", None)
    return {t.value: dict(v) for t, v in seen.items()} if isinstance(seen, dict) else {}


def readable_by(state: LiveState, topic: Topic) -> list[str]:
    """The versions of ``topic`` the instance ``state`` describes can read (v1.0 for an instance
    older than version reporting)."""
    return list(state.reads.get(topic.value, [BASE_VERSION]))


async def consumer_states(redis: AsyncClient, keys: KeySpace, topic: Topic) -> list[LiveState]:
    """The live states of every instance of the services that consume ``topic`` (SCAN + GET of
    their status keys only: what a producer's ACL user may read, core/redis/acl.py)."""
    return await _states_of(redis, keys, [s for s in ServiceName if s.consumes is topic])


async def producer_states(redis: AsyncClient, keys: KeySpace, topic: Topic) -> list[LiveState]:
    """The live states of every instance of the services that write ``topic``, comparators left
    out (they write nothing); what a consumer's ACL user may read."""
    states = await _states_of(redis, keys, [s for s in ServiceName if s.produces is topic])
    return [s for s in states if not s.is_comparator]


async def _states_of(redis: AsyncClient, keys: KeySpace, services: list[ServiceName]) -> list[LiveState]:
    states: list[LiveState] = []
    for service in services:
        names = [k async for k in redis.scan_iter(match=keys.status(service, "*"), count=500)]
        if not names:
            continue
        pipe = redis.pipeline(transaction=False)  # one GET per key: cluster-safe, unlike MGET
        for name in names:
            pipe.get(name)
        for raw in await pipe.execute():
            if raw is not None:
                with contextlib.suppress(ValueError, TypeError):
                    states.append(LiveState.from_json(raw))
    return states


async def check_producer(
    redis: AsyncClient,
    keys: KeySpace,
    service: ServiceName,
    version: str,
    *,
    variable: str | None = None,
    retry: RetryPolicy | None = None,
) -> None:
    """Refuse writing ``version`` on ``service``'s output topic while a live consumer of that topic
    cannot read it. Stale instances count too: a hung consumer comes back reading what it read;
    one that stopped cleanly does not (its last report stays a while for ``cdb status`` only)."""
    topic = service.produces
    # Connection errors are retried like the topology check: a service may start mid-failover.
    states = await call_async(
        retry or RetryPolicy(), "version gate", lambda: consumer_states(redis, keys, topic)
    )
    blockers = {
        f"{s.service}/{s.instance}": readable_by(s, topic)
        for s in states
        if not s.stopped and version not in readable_by(s, topic)
    }
    if blockers:
        raise unreadable(topic, version, blockers, variable)


async def check_consumer(
    redis: AsyncClient,
    keys: KeySpace,
    service: ServiceName,
    reads: Collection[str],
    *,
    retry: RetryPolicy | None = None,
) -> None:
    """Refuse reading ``service``'s input topic while a live producer of it writes a version this
    instance cannot read (``reads``): every message it wrote would be dead-lettered. The mirror of
    :func:`check_producer` for the way back (a consumer rolled back to the legacy path, a version
    retired): producers move back first. Stale producers count; stopped ones do not."""
    topic = service.consumes
    if topic is None:
        return
    states = await call_async(
        retry or RetryPolicy(), "version gate", lambda: producer_states(redis, keys, topic)
    )
    blockers = {
        f"{s.service}/{s.instance}": version
        for s in states
        if not s.stopped and (version := s.writes.get(topic.value, BASE_VERSION)) not in reads
    }
    if blockers:
        names = ", ".join(f"{name} (writes {version})" for name, version in blockers.items())
        variable = f"PRODUCE_VERSION_{topic.value.upper()}"
        raise ConfigError(
            variable,
            sorted(set(blockers.values()))[0],
            sorted(reads),
            f"running producers of {topic.value} write what this {service.value} instance cannot "
            f"read: {names}; move their {variable} back first, then start it",
        )


def unreadable(
    topic: Topic, version: str, blockers: Mapping[str, list[str]], variable: str | None = None
) -> ConfigError:
    """The refusal of writing ``version`` on ``topic`` while the consumers ``blockers`` (name ->
    the versions it reads) cannot read it; it offers what every one of them reads."""
    can_read = set(known_versions(topic))
    for reads in blockers.values():
        can_read &= set(reads)
    names = ", ".join(f"{name} (reads {', '.join(reads)})" for name, reads in blockers.items())
    return ConfigError(
        variable or f"PRODUCE_VERSION_{topic.value.upper()}",
        version,
        sorted(can_read),
        f"running consumers of {topic.value} cannot read {version}: {names}; upgrade them first",
    )
