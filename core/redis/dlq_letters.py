"""Reading parked dead letters and decoding them again (``cdb dlq replay``, ``cdb dlq catch-up``).

Both tools read a topic's letters the same way (:func:`iter_letters`, :func:`find_letter`, the
marks of letters already replayed: :func:`replay_marks`) and ask the same question of each:
does the consuming service's codec read it now (:func:`redecode`)?

Which form the raw bytes have: a letter with a ``stream_id`` came from a stream
consumer and holds the entry's field map rendered as JSON
(:func:`core.codec.fields.field_map_bytes`); one without came from ws (a JSON
body, or an exchange frame that no codec reads: it stays).

A letter of a later contract version (v1.1, v2.0) is checked with the consuming service's
codec (a :class:`~core.versions.codec.VersionedCodec`: does it read that version now, and does
it convert to the version its code reads?) but written back **in the version it was written
in**, every stream field as the producer wrote it: a replay never converts a message to a
version its producer did not write (:func:`as_written`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from core.codec import Codec, Decoded, build_codec
from core.codec.fields import fields_of_pairs
from core.errors import ContractError
from core.redis.dead_letters import DeadLetter, is_entry_id
from core.redis.modes import SyncClient, reply_text
from core.topics import CodecPath, KeySpace, Topic
from core.versions.codec import VersionedCodec

__all__ = ["as_written", "find_letter", "iter_letters", "redecode", "replay_marks"]

_PAGE = 500


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
