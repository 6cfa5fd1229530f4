"""Putting fixed dead letters back into their topic stream (``cdb dlq replay``).

A dead letter is re-validated with the codec the consuming service uses now
(after the fix: a new release, a raised ``MAX_MESSAGE_BYTES``, the lenient
profile, ...). What decodes is published again **through the codec** (its JSON
body on the channel, its field map in ``<topic>_stream``; never the raw bytes),
so the consumer group reads it like any new entry. What still fails stays in the
dead-letter stream with its new errors.

A replayed copy lands **behind** every entry already in the stream, so the consuming
service may ignore it on purpose: a trade older than a newer one of its symbol is
stale to the strategy, a signal or order whose id is already on the stream is a
duplicate. Before writing, :func:`replay_letters` works that out
(:mod:`core.redis.dlq_impact`) and, by default, refuses to write anything while any
letter would be ignored; the caller chooses :attr:`IgnoredPolicy.ONLY_NEWER` or
:attr:`IgnoredPolicy.INCLUDE`, or makes them count in their original order with
``cdb dlq catch-up`` (:mod:`core.redis.dlq_catchup`).

A replayed letter is deleted from the dead-letter stream only when asked
(``delete_replayed``); otherwise it is marked in ``KeySpace.dlq_replayed(topic)``
(dead-letter id -> new stream id), shown as replayed by ``cdb dlq list``, skipped
by a later replay unless ``again``, and counted as reviewed by ``cdb cutover check``.

How a letter is read and decoded again, and which contract version it goes back in
(the version it was written in, never converted): :mod:`core.redis.dlq_letters`.

Replay goes in the order the messages first came, not the order they were parked (a
handler that kept failing parks its entry after later ones; a consumer that ignores old
input would then drop the earlier one as stale): :func:`replay_order`.

At least once: the message is published before the letter is marked or deleted,
so an interruption in between can replay it twice; consumers dedupe on the
message's id.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from core.codec import Codec, Decoded
from core.errors import ContractError, ErrorDetail
from core.redis.dead_letters import DeadLetter
from core.redis.dlq_impact import ReplayImpact, assess_replay, entry_key
from core.redis.dlq_letters import as_written, find_letter, iter_letters, redecode, replay_marks
from core.redis.dlq_lock import LOCK_TTL_MS, ReplayLock, replay_lock
from core.redis.modes import SyncClient
from core.redis.publisher import publish_message
from core.topics import KeySpace, Topic

__all__ = [
    "IgnoredPolicy",
    "ReplayOutcome",
    "ReplayReport",
    "ReplayStatus",
    "as_written",
    "find_letter",
    "iter_letters",
    "redecode",
    "replay_letters",
    "replay_marks",
    "replay_order",
]


class ReplayStatus(StrEnum):
    """What became of one selected dead letter."""

    REPLAYED = "replayed"
    """Re-validated and published to the topic stream."""
    WOULD_REPLAY = "would_replay"
    """Dry run: it re-validates; nothing was written."""
    STILL_INVALID = "still_invalid"
    """It still does not decode; it stays in the dead-letter stream."""
    ALREADY_REPLAYED = "already_replayed"
    """Marked as replayed earlier; skipped (``again`` replays it anyway)."""
    NOT_FOUND = "not_found"
    """No such entry in the dead-letter stream."""
    WITHHELD = "withheld"
    """Not written: the consuming service would ignore its replayed copy (stale, duplicate)."""
    HELD = "held"
    """Not written: it would count, but the replay was refused because others would be ignored."""


class IgnoredPolicy(StrEnum):
    """What to do with letters whose replayed copy the consuming service would ignore."""

    REFUSE = "refuse"
    """Write nothing at all and say why (the default: no silent loss)."""
    ONLY_NEWER = "only_newer"
    """Replay only the letters that would count; leave the others in the dead-letter stream."""
    INCLUDE = "include"
    """Replay them anyway (the consumer counts them as ignored)."""


@dataclass(frozen=True)
class ReplayOutcome:
    """One selected dead letter and what replay did with it."""

    entry_id: str
    status: ReplayStatus
    stream_id: str | None = None
    deleted: bool = False
    defaulted: tuple[str, ...] = ()
    errors: list[ErrorDetail] = field(default_factory=list)
    ignored: str | None = None
    """Why the consuming service would ignore the replayed copy (stale, duplicate), if it would."""

    def to_dict(self) -> dict[str, Any]:
        """Plain values for ``--json``."""
        return {
            "entry_id": self.entry_id,
            "status": self.status.value,
            "stream_id": self.stream_id,
            "deleted": self.deleted,
            "defaulted": list(self.defaulted),
            "errors": self.errors,
            "ignored": self.ignored,
        }


def _write(
    client: SyncClient,
    keys: KeySpace,
    topic: Topic,
    codec: Codec,
    item: tuple[DeadLetter, Decoded],
    *,
    delete: bool,
) -> str:
    letter, decoded = item
    codec, decoded = as_written(codec, topic, letter, decoded)
    stream_id = publish_message(client, topic, decoded.message, codec=codec, keys=keys)
    if delete:
        client.xdel(keys.dlq(topic), letter.entry_id)
        client.hdel(keys.dlq_replayed(topic), letter.entry_id)
    else:
        client.hset(keys.dlq_replayed(topic), letter.entry_id, stream_id)
    return stream_id


def replay_order(letter: DeadLetter) -> tuple[int, int]:
    """Where ``letter`` goes in a replay: by its original entry id (within a partition, the
    order the consumer read it in), or, for a letter that never was a stream entry (a ws
    frame), by its own dead-letter id, which is when ws received it. Both are server times
    in ms, so those letters fall in among the others by time; ties keep the parked order."""
    return entry_key(letter.stream_id or letter.entry_id)


def _once(letters: Sequence[DeadLetter | str]) -> list[DeadLetter | str]:
    """Each letter once, where first named: an id given twice (or as its millisecond and as its
    full id) is one letter, published once, not a duplicate of itself."""
    seen: set[str] = set()
    out: list[DeadLetter | str] = []
    for letter in letters:
        name = letter if isinstance(letter, str) else letter.entry_id
        if name not in seen:
            seen.add(name)
            out.append(letter)
    return out


@dataclass(frozen=True)
class ReplayReport:
    """Every selected letter's outcome, what the consumer would do with them, and whether the
    replay was refused (nothing written) because some would be ignored."""

    outcomes: list[ReplayOutcome]
    impact: ReplayImpact | None
    refused: bool = False

    @property
    def ignored(self) -> int:
        """Selected letters whose replayed copy the consumer would ignore (stale, duplicate)."""
        return len(self.impact.ignored) if self.impact else 0


def replay_letters(
    client: SyncClient,
    keys: KeySpace,
    topic: Topic,
    codec: Codec,
    *,
    ids: Sequence[str] | None = None,
    delete_replayed: bool = False,
    dry_run: bool = False,
    again: bool = False,
    policy: IgnoredPolicy = IgnoredPolicy.REFUSE,
    lock_ttl_ms: int = LOCK_TTL_MS,
) -> ReplayReport:
    """Replay the dead letters ``ids`` of ``topic`` (``None``: all of them) with ``codec``, the
    consuming service's (each is published in its own contract version: :func:`as_written`), in
    their original order (:func:`replay_order`; ids not found are reported last).

    Before writing, it works out which replayed copies the consuming service would ignore
    (:func:`core.redis.dlq_impact.assess_replay`). With ``policy`` ``REFUSE`` (the default)
    and any such letter, nothing is written (``refused``); ``ONLY_NEWER`` replays the others
    and leaves those in the dead-letter stream; ``INCLUDE`` replays them anyway.

    Unless ``dry_run``, it holds the topic's replay lock throughout
    (:func:`core.redis.dlq_lock.replay_lock`): while another replay or catch-up of ``topic``
    runs, it raises :class:`~core.redis.dlq_lock.ReplayInProgressError` and writes nothing. If
    it loses the lock partway (paused past ``lock_ttl_ms`` while another took it), it writes
    nothing more and raises :class:`~core.redis.dlq_lock.ReplayLockLostError` saying how many
    it had published.
    """
    # A dry run writes nothing, so it need not wait for anyone.
    held: AbstractContextManager[ReplayLock | None] = (
        nullcontext() if dry_run else replay_lock(client, keys, topic, ttl_ms=lock_ttl_ms)
    )
    with held as lock:
        return _replay(
            client,
            keys,
            topic,
            codec,
            lock,
            ids=ids,
            delete_replayed=delete_replayed,
            dry_run=dry_run,
            again=again,
            policy=policy,
        )


def _replay(
    client: SyncClient,
    keys: KeySpace,
    topic: Topic,
    codec: Codec,
    lock: ReplayLock | None,
    *,
    ids: Sequence[str] | None,
    delete_replayed: bool,
    dry_run: bool,
    again: bool,
    policy: IgnoredPolicy,
) -> ReplayReport:
    marks = replay_marks(client, keys, topic)
    letters: list[DeadLetter | str]
    if ids is None:
        letters = list(iter_letters(client, keys, topic))
    else:
        letters = _once([find_letter(client, keys, topic, i) or i for i in ids])
    found = sorted((x for x in letters if not isinstance(x, str)), key=replay_order)  # stable
    letters = [*found, *(x for x in letters if isinstance(x, str))]
    slots: list[ReplayOutcome | tuple[DeadLetter, Decoded]] = []
    for letter in letters:
        if isinstance(letter, str):
            slots.append(ReplayOutcome(letter, ReplayStatus.NOT_FOUND))
        elif letter.entry_id in marks and not again:
            slots.append(
                ReplayOutcome(letter.entry_id, ReplayStatus.ALREADY_REPLAYED, marks[letter.entry_id])
            )
        else:
            try:
                slots.append((letter, redecode(codec, topic, letter)))
            except ContractError as exc:
                slots.append(
                    ReplayOutcome(letter.entry_id, ReplayStatus.STILL_INVALID, errors=exc.loggable_errors())
                )
    decodable = [s for s in slots if isinstance(s, tuple)]
    impact = assess_replay(client, keys, topic, decodable) if decodable else None
    refused = bool(impact and impact.ignored) and policy is IgnoredPolicy.REFUSE and not dry_run

    def held_back(reason: str | None) -> bool:
        return dry_run or refused or (reason is not None and policy is IgnoredPolicy.ONLY_NEWER)

    total = sum(
        1 for letter, _ in decodable if not held_back(impact.reason(letter.entry_id) if impact else None)
    )
    out: list[ReplayOutcome] = []
    published = 0
    for slot in slots:
        if isinstance(slot, ReplayOutcome):
            out.append(slot)
            continue
        letter, decoded = slot
        reason = impact.reason(letter.entry_id) if impact else None
        if held_back(reason):
            status = (
                ReplayStatus.WOULD_REPLAY
                if dry_run
                else ReplayStatus.WITHHELD
                if reason
                else ReplayStatus.HELD
            )
            out.append(ReplayOutcome(letter.entry_id, status, defaulted=decoded.defaulted, ignored=reason))
        else:
            if lock is not None:  # nothing more once another replay took the lock
                lock.check(published=published, total=total)
            stream_id = _write(client, keys, topic, codec, slot, delete=delete_replayed)
            published += 1
            out.append(
                ReplayOutcome(
                    letter.entry_id,
                    ReplayStatus.REPLAYED,
                    stream_id,
                    deleted=delete_replayed,
                    defaulted=decoded.defaulted,
                    ignored=reason,
                )
            )
    return ReplayReport(out, impact, refused)
