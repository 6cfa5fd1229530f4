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

Which form the raw bytes have: a letter with a ``stream_id`` came from a stream
consumer and holds the entry's field map rendered as JSON
(:func:`core.codec.fields.field_map_bytes`); one without came from ws (a JSON
body, or an exchange frame that no codec reads: it stays).

A letter of a later contract version (v1.1, v2.0) is checked with the consuming service's
codec (a :class:`~core.versions.codec.VersionedCodec`: does it read that version now, and does
it convert to the version its code reads?) but published **in the version it was written in**,
every stream field as the producer wrote it: a replay never converts a message to a version
its producer did not write (:func:`as_written`).

Replay goes in the order the messages first came, not the order they were parked (a
handler that kept failing parks its entry after later ones; a consumer that ignores old
input would then drop the earlier one as stale): :func:`replay_order`.

At least once: the message is published before the letter is marked or deleted,
so an interruption in between can replay it twice; consumers dedupe on the
message's id.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from core.codec import Codec, Decoded, build_codec
from core.codec.fields import fields_of_pairs
from core.errors import ContractError, ErrorDetail
from core.redis.dead_letters import DeadLetter, is_entry_id
from core.redis.dlq_impact import ReplayImpact, assess_replay, entry_key
from core.redis.dlq_lock import ReplayLock, replay_lock
from core.redis.modes import SyncClient, reply_text
from core.redis.publisher import publish_message
from core.topics import CodecPath, KeySpace, Topic
from core.versions.codec import VersionedCodec

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

_PAGE = 500


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


def replay_marks(client: SyncClient, keys: KeySpace, topic: Topic) -> dict[str, str]:
    """Dead letters of ``topic`` replayed but kept: dead-letter id -> new stream id. (The same
    hash holds the review point, ``reviewed-through``: not a letter, so not a mark.)"""
    marks: Any = client.hgetall(keys.dlq_replayed(topic))
    texts = ((reply_text(k), reply_text(v)) for k, v in marks.items())
    return {k: v for k, v in texts if is_entry_id(k)}


def iter_letters(client: SyncClient, keys: KeySpace, topic: Topic) -> Iterator[DeadLetter]:
    """Every dead letter of ``topic``, oldest first, read a page at a time."""
    start = "-"
    while True:
        entries: Any = client.xrange(keys.dlq(topic), min=start, max="+", count=_PAGE)
        for raw_id, fields in entries:
            yield DeadLetter.from_entry(raw_id, fields)
        if len(entries) < _PAGE:
            return
        start = "(" + reply_text(entries[-1][0])


def find_letter(client: SyncClient, keys: KeySpace, topic: Topic, entry_id: str) -> DeadLetter | None:
    """The dead letter ``entry_id`` of ``topic``, or None (also for text that is no stream id)."""
    if not is_entry_id(entry_id):
        return None
    entries: Any = client.xrange(keys.dlq(topic), min=entry_id, max=entry_id, count=1)
    return DeadLetter.from_entry(*entries[0]) if entries else None


def redecode(codec: Codec, topic: Topic, letter: DeadLetter) -> Decoded:
    """Decode a dead letter's raw bytes with ``codec``; :class:`ContractError` if it still fails,
    or if the letter keeps only the first bytes of its payload (``payload_truncated``)."""
    if letter.truncated:
        raise ContractError(
            topic=topic.value,
            path=codec.path.value,
            profile=codec.profile.value if codec.profile else None,
            raw=letter.raw,
            errors=[
                {
                    "type": "payload_truncated",
                    "loc": (),
                    "msg": f"the dead letter keeps only the first {len(letter.raw)} of {letter.raw_size} "
                    f"bytes (sha256 {letter.raw_sha256}): not replayable; resend the original",
                }
            ],
        )
    if not letter.stream_id:
        return codec.decode(topic, letter.raw)
    try:
        # A letter of an entry that gave a name twice keeps every pair: read back as it came.
        rendered = json.loads(letter.raw.decode("utf-8"), object_pairs_hook=fields_of_pairs)
    except ValueError:
        rendered = None
    if not isinstance(rendered, dict) or not all(isinstance(v, str) for v in rendered.values()):
        raise ContractError(
            topic=topic.value,
            path=codec.path.value,
            profile=codec.profile.value if codec.profile else None,
            raw=letter.raw,
            errors=[{"type": "json_invalid", "loc": (), "msg": "dead letter is not a stream field map"}],
        )
    # The original entry's id: its server time is what a lenient fill may take (never "now").
    return codec.from_fields(topic, rendered, entry_id=letter.stream_id)


def _letter_version(letter: DeadLetter) -> str | None:
    """The ``api_version`` the letter's payload says (None when it says none or is no JSON object)."""
    try:
        body = json.loads(letter.raw.decode("utf-8"))
        value = body.get("api_version") if isinstance(body, dict) else None
        if letter.stream_id and isinstance(value, str):  # a field map: each value is JSON text
            value = json.loads(value)
    except ValueError:
        return None
    return value if isinstance(value, str) else None


def as_written(codec: Codec, topic: Topic, letter: DeadLetter, decoded: Decoded) -> tuple[Codec, Decoded]:
    """The codec that writes ``letter`` in the contract version it was written in, and the letter
    decoded by it (no conversion); ``codec`` and ``decoded`` themselves when ``codec`` writes that
    version already or is not versioned (the legacy path reads and writes v1.0 only)."""
    version = _letter_version(letter)
    if not isinstance(codec, VersionedCodec) or version is None or version == codec.writes(topic):
        return codec, decoded
    # What fills v1.0 defaults and the size it reads, as the consumer's codec.
    inner = build_codec(CodecPath.PYDANTIC, codec.profile, max_bytes=codec.max_bytes)
    same = VersionedCodec(inner, writes={topic: version}, own={topic: version}, max_bytes=codec.max_bytes)
    return same, redecode(same, topic, letter)


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
    runs, it raises :class:`~core.redis.dlq_lock.ReplayInProgressError` and writes nothing.
    """
    # A dry run writes nothing, so it need not wait for anyone.
    held: AbstractContextManager[ReplayLock | None] = (
        nullcontext() if dry_run else replay_lock(client, keys, topic)
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
    out: list[ReplayOutcome] = []
    for slot in slots:
        if isinstance(slot, ReplayOutcome):
            out.append(slot)
            continue
        letter, decoded = slot
        reason = impact.reason(letter.entry_id) if impact else None
        if dry_run or refused or (reason and policy is IgnoredPolicy.ONLY_NEWER):
            status = (
                ReplayStatus.WOULD_REPLAY
                if dry_run
                else ReplayStatus.WITHHELD
                if reason
                else ReplayStatus.HELD
            )
            out.append(ReplayOutcome(letter.entry_id, status, defaulted=decoded.defaulted, ignored=reason))
        else:
            if lock is not None:
                lock.check()
            stream_id = _write(client, keys, topic, codec, slot, delete=delete_replayed)
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
