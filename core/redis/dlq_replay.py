"""Putting fixed dead letters back into their topic stream (``cdb dlq replay``).

A dead letter is re-validated with the codec the consuming service uses now
(after the fix: a new release, a raised ``MAX_MESSAGE_BYTES``, the lenient
profile, ...). What decodes is published again **through the codec** (its JSON
body on the channel, its field map in ``<topic>_stream``; never the raw bytes),
so the consumer group reads it like any new entry. What still fails stays in the
dead-letter stream with its new errors.

A replayed letter is deleted from the dead-letter stream only when asked
(``delete_replayed``); otherwise it is marked in ``KeySpace.dlq_replayed(topic)``
(dead-letter id -> new stream id), shown as replayed by ``cdb dlq list``, skipped
by a later replay unless ``again``, and counted as reviewed by ``cdb cutover check``.

Which form the raw bytes have: a letter with a ``stream_id`` came from a stream
consumer and holds the entry's field map rendered as JSON
(:func:`core.codec.fields.field_map_bytes`); one without came from ws (a JSON
body, or an exchange frame that no codec reads: it stays).

At least once: the message is published before the letter is marked or deleted,
so an interruption in between can replay it twice; consumers dedupe on the
message's id.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from core.codec import Codec, Decoded
from core.errors import ContractError, ErrorDetail
from core.redis.dead_letters import DeadLetter
from core.redis.modes import SyncClient
from core.redis.publisher import publish_message
from core.topics import KeySpace, Topic

__all__ = [
    "ReplayOutcome",
    "ReplayStatus",
    "find_letter",
    "iter_letters",
    "redecode",
    "replay_letters",
    "replay_marks",
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


@dataclass(frozen=True)
class ReplayOutcome:
    """One selected dead letter and what replay did with it."""

    entry_id: str
    status: ReplayStatus
    stream_id: str | None = None
    deleted: bool = False
    defaulted: tuple[str, ...] = ()
    errors: list[ErrorDetail] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Plain values for ``--json``."""
        return {
            "entry_id": self.entry_id,
            "status": self.status.value,
            "stream_id": self.stream_id,
            "deleted": self.deleted,
            "defaulted": list(self.defaulted),
            "errors": self.errors,
        }


def _text(value: Any) -> str:
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)


def replay_marks(client: SyncClient, keys: KeySpace, topic: Topic) -> dict[str, str]:
    """Dead letters of ``topic`` replayed but kept: dead-letter id -> new stream id."""
    marks: Any = client.hgetall(keys.dlq_replayed(topic))
    return {_text(k): _text(v) for k, v in marks.items()}


def iter_letters(client: SyncClient, keys: KeySpace, topic: Topic) -> Iterator[DeadLetter]:
    """Every dead letter of ``topic``, oldest first, read a page at a time."""
    start = "-"
    while True:
        entries: Any = client.xrange(keys.dlq(topic), min=start, max="+", count=_PAGE)
        for raw_id, fields in entries:
            yield DeadLetter.from_entry(raw_id, fields)
        if len(entries) < _PAGE:
            return
        start = "(" + _text(entries[-1][0])


def find_letter(client: SyncClient, keys: KeySpace, topic: Topic, entry_id: str) -> DeadLetter | None:
    """The dead letter ``entry_id`` of ``topic``, or None."""
    entries: Any = client.xrange(keys.dlq(topic), min=entry_id, max=entry_id, count=1)
    return DeadLetter.from_entry(*entries[0]) if entries else None


def redecode(codec: Codec, topic: Topic, letter: DeadLetter) -> Decoded:
    """Decode a dead letter's raw bytes with ``codec``; :class:`ContractError` if it still fails."""
    if not letter.stream_id:
        return codec.decode(topic, letter.raw)
    try:
        rendered = json.loads(letter.raw.decode("utf-8"))
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


def _replay_one(
    client: SyncClient,
    keys: KeySpace,
    topic: Topic,
    codec: Codec,
    letter: DeadLetter,
    *,
    delete: bool,
    dry_run: bool,
) -> ReplayOutcome:
    try:
        decoded = redecode(codec, topic, letter)
    except ContractError as exc:
        return ReplayOutcome(letter.entry_id, ReplayStatus.STILL_INVALID, errors=exc.loggable_errors())
    if dry_run:
        return ReplayOutcome(letter.entry_id, ReplayStatus.WOULD_REPLAY, defaulted=decoded.defaulted)
    stream_id = publish_message(client, topic, decoded.message, codec=codec, keys=keys)
    if delete:
        client.xdel(keys.dlq(topic), letter.entry_id)
        client.hdel(keys.dlq_replayed(topic), letter.entry_id)
    else:
        client.hset(keys.dlq_replayed(topic), letter.entry_id, stream_id)
    return ReplayOutcome(
        letter.entry_id, ReplayStatus.REPLAYED, stream_id, deleted=delete, defaulted=decoded.defaulted
    )


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
) -> list[ReplayOutcome]:
    """Replay the dead letters ``ids`` of ``topic`` (``None``: all of them) with ``codec``."""
    marks = replay_marks(client, keys, topic)
    letters: list[DeadLetter | str]
    if ids is None:
        letters = list(iter_letters(client, keys, topic))
    else:
        letters = [find_letter(client, keys, topic, i) or i for i in ids]
    out = []
    for letter in letters:
        if isinstance(letter, str):
            out.append(ReplayOutcome(letter, ReplayStatus.NOT_FOUND))
        elif letter.entry_id in marks and not again:
            out.append(ReplayOutcome(letter.entry_id, ReplayStatus.ALREADY_REPLAYED, marks[letter.entry_id]))
        else:
            out.append(
                _replay_one(client, keys, topic, codec, letter, delete=delete_replayed, dry_run=dry_run)
            )
    return out
