"""In-order catch-up (``cdb dlq catch-up``): make dead-lettered entries count where they were.

A replay appends a dead letter's message behind everything newer, where business logic
that ignores old input drops it (:mod:`core.redis.dlq_impact`). The original entries are
still in the topic stream (a dead letter records its original entry id), so the consumer
group itself can go back: with the consuming service **stopped**, the group of each
partition is set to just before the first entry its service dead-lettered that the
service's codec now accepts (``XGROUP SETID``). The restarted service then

1. rebuilds its per-partition state from the entries up to that point
   (:mod:`services.partitions`: every finished entry, in order, nothing published), so
   the state is the one it had just before the first dead letter;
2. reads everything from there on **in the original order**: the dead-lettered entries
   now decode and count; entries it had handled after the first dead letter are handled
   again with the same state, so they give the same outputs with the same ids, which
   downstream recognises (risk by ``signal_id``, execution by ``order_id``).

Refused while any instance of the consuming service reports live state (running, or
stopped uncleanly less than ~20 s ago): a running consumer would keep going from its own
state. Pending entries at or after the rewind point are acknowledged (they are read again
in order); earlier ones stay pending for the restarted service's takeover.

The letters covered are marked as replayed in ``KeySpace.dlq_replayed`` with their
original entry id (re-read in place), so ``cdb dlq list`` shows them resolved and
``cdb cutover check`` counts them as reviewed. Letters in the window that still fail to
decode are read again too and parked again under a new letter; the old one is marked
with the same id. Letters whose original entry is gone (trimmed) need ``cdb dlq replay``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from core.codec import Codec
from core.errors import ContractError
from core.redis.dead_letters import DeadLetter
from core.redis.dlq_impact import entry_key, group_position, iter_stream, letter_partitions, parked_entries
from core.redis.dlq_letters import find_letter, iter_letters, redecode, replay_marks
from core.redis.dlq_lock import ReplayLock, replay_lock
from core.redis.modes import SyncClient
from core.status import running_instances
from core.topics import KeySpace, ServiceName, Topic

__all__ = ["CatchUpPlan", "PartitionCatchUp", "catch_up", "plan_catch_up"]

_MAX_SEQ = 2**64 - 1
_PAGE = 1_000


@dataclass
class PartitionCatchUp:
    """What catch-up does (or would do) on one partition stream of the topic."""

    partition: int
    stream: str
    position: str | None
    """The group's last-delivered id before the catch-up (``None``: no group)."""
    rewind_to: str | None = None
    """The id the group is set to: just before the first dead-lettered entry that decodes now."""
    read_from: str | None = None
    """That first entry: the service reads on from here (what an operator reads; ``rewind_to``
    is its predecessor, which may end in ``-18446744073709551615``)."""
    letters: list[str] = field(default_factory=list)
    """Dead-letter ids whose original entry is read again and now counts."""
    still_invalid: list[str] = field(default_factory=list)
    """Dead-letter ids in the window that still fail: read again and parked again."""
    handled_again: int = 0
    """Entries after the rewind point the service had handled: handled again (same ids)."""
    pending_acked: int = 0
    """Pending entries at or after the rewind point, acknowledged to be read again in order."""


@dataclass
class CatchUpPlan:
    """Catch-up of one topic: per partition, the letters it covers, and why it is refused if it is."""

    topic: Topic
    service: ServiceName
    partitions: list[PartitionCatchUp]
    gone: list[str] = field(default_factory=list)
    """Letters whose original entry is no longer in the stream (trimmed): replay them instead."""
    refused: str | None = None
    """Why nothing may be changed now (a live consuming instance), or ``None``."""
    applied: bool = False

    @property
    def letters(self) -> int:
        """Dead letters the catch-up makes count."""
        return sum(len(p.letters) for p in self.partitions)

    def to_dict(self) -> dict[str, Any]:
        """Plain values for ``--json``."""
        return {
            "topic": self.topic.value,
            "service": self.service.value,
            "refused": self.refused,
            "applied": self.applied,
            "letters": self.letters,
            "gone": self.gone,
            "partitions": [asdict(p) for p in self.partitions],
        }


def _predecessor(entry_id: str) -> str:
    ms, seq = entry_key(entry_id)
    return f"{ms}-{seq - 1}" if seq > 0 else f"{ms - 1}-{_MAX_SEQ}"


def plan_catch_up(client: SyncClient, keys: KeySpace, topic: Topic, codec: Codec) -> CatchUpPlan:
    """Work out the catch-up of ``topic`` for its consuming service, decoding with ``codec``
    (the codec the service will run when restarted). Writes nothing."""
    service = next(s for s in ServiceName if s.consumes is topic)
    group = keys.group(service)
    parts = [
        PartitionCatchUp(p, keys.stream(topic, p), group_position(client, keys.stream(topic, p), group))
        for p in range(keys.partitions)
    ]
    plan = CatchUpPlan(topic, service, parts)
    live = running_instances(client, keys, service)
    if live:
        names = ", ".join(f"{s.instance} ({'stale' if s.is_stale() else 'live'})" for s in live)
        plan.refused = (
            f"{service.value} is running ({names}): stop it first (a clean stop reports it stopped; "
            "after a crash it expires about 20 s after the last report)"
        )
    marks = replay_marks(client, keys, topic)
    every = list(iter_letters(client, keys, topic))
    where = letter_partitions(client, keys, topic, every)
    parked = parked_entries(keys, topic, every, where)
    mine = [x for x in every if x.stream_id and x.service == service.value and x.entry_id not in marks]
    by_partition: dict[int, list[tuple[DeadLetter, bool]]] = {}
    for letter in mine:
        partition = where[letter.entry_id]
        if partition is None:
            plan.gone.append(letter.entry_id)
            continue
        try:
            redecode(codec, topic, letter)
            ok = True
        except ContractError:
            ok = False
        by_partition.setdefault(partition, []).append((letter, ok))
    for part in parts:
        found = by_partition.get(part.partition, [])
        firsts = [entry_key(x.stream_id) for x, ok in found if ok]
        if part.position is None or not firsts:
            continue
        first = min(firsts)
        part.read_from = f"{first[0]}-{first[1]}"
        part.rewind_to = _predecessor(part.read_from)
        end = entry_key(part.position)
        for letter, ok in found:
            if first <= entry_key(letter.stream_id) <= end:
                (part.letters if ok else part.still_invalid).append(letter.entry_id)
        for entry_id, _ in iter_stream(client, part.stream, f"{first[0]}-{first[1]}"):
            if entry_key(entry_id) > end:
                break
            if (part.stream, entry_id) not in parked:
                part.handled_again += 1
    return plan


def _ack_pending_from(client: SyncClient, stream: str, group: str, start: str) -> int:
    acked = 0
    while True:
        rows: Any = client.xpending_range(stream, group, min=start, max="+", count=_PAGE)
        ids = [r["message_id"] for r in rows]
        if ids:
            client.xack(stream, group, *ids)
            acked += len(ids)
        if len(rows) < _PAGE:
            return acked


def _entries_from(client: SyncClient, stream: str, start: str) -> int:
    return sum(1 for _ in iter_stream(client, stream, start))


def catch_up(
    client: SyncClient, keys: KeySpace, topic: Topic, codec: Codec, *, dry_run: bool = False
) -> CatchUpPlan:
    """Plan the catch-up of ``topic`` and, unless ``dry_run`` or refused, rewind each partition's
    group and mark the letters covered (see the module docstring). Unless ``dry_run`` it holds
    the topic's replay lock (:class:`~core.redis.dlq_lock.ReplayInProgressError` while another
    replay or catch-up of ``topic`` runs): a replay meanwhile would publish what it re-reads."""
    if dry_run:
        return plan_catch_up(client, keys, topic, codec)
    with replay_lock(client, keys, topic) as lock:
        return _apply(client, keys, topic, plan_catch_up(client, keys, topic, codec), lock)


def _apply(
    client: SyncClient, keys: KeySpace, topic: Topic, plan: CatchUpPlan, lock: ReplayLock
) -> CatchUpPlan:
    if plan.refused:
        return plan
    group = keys.group(plan.service)
    parts = [part for part in plan.partitions if part.rewind_to is not None]
    for done, part in enumerate(parts):
        assert part.rewind_to is not None  # kept above
        lock.check(published=done, total=len(parts), done="rewinding # partitions")
        start = "(" + part.rewind_to
        part.pending_acked = _ack_pending_from(client, part.stream, group, start)
        info: Any = client.xinfo_stream(part.stream)
        # ENTRIESREAD keeps the group's lag exact: everything after the rewind point is unread.
        entries_read = max(0, int(info["entries-added"]) - _entries_from(client, part.stream, start))
        client.xgroup_setid(part.stream, group, part.rewind_to, entries_read=entries_read)
        for letter_id in [*part.letters, *part.still_invalid]:
            letter = find_letter(client, keys, topic, letter_id)
            client.hset(keys.dlq_replayed(topic), letter_id, letter.stream_id if letter else "")
    plan.applied = True
    return plan
