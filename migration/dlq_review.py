"""Which dead letters a release manager has not reviewed yet (for ``cdb cutover check``).

Reviewed: a letter replayed and kept (marked by ``cdb dlq replay`` in
``KeySpace.dlq_replayed``), or one at or before the ``reviewed_before`` point (an
entry id, or epoch ms meaning that whole millisecond), or one at or before the review
recorded once with ``cdb dlq review`` (the field :data:`REVIEWED_FIELD` of the same
hash, which the operator's ACL may already write). Everything else is unreviewed.

A recorded review that is not an entry id (written by hand, or by a ``cdb dlq review``
that took any ``--through``) reviews nothing: its letters count as unreviewed and the
report says why, instead of the check failing on it. An empty recorded value is a review
``cdb dlq review`` cleared (the operator may HSET the field, not HDEL it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from core.errors import ConfigError
from core.topics import KeySpace, Topic

if TYPE_CHECKING:  # core.redis imports the codec, whose registry imports migration
    from core.redis.modes import AsyncClient

__all__ = ["REVIEWED_FIELD", "checked_point", "later_point", "review_dead_letters", "review_key"]

REVIEWED_FIELD = "reviewed-through"
"""Field of ``<topic>_dlq_replayed`` holding the last dead-letter id a person reviewed
(``cdb dlq review``); never a dead-letter id itself, so it is no replay mark."""

_PAGE = 1000


def _text(value: Any) -> str:
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)


_MAX_SEQ = 2**64 - 1


def review_key(point: str) -> tuple[int, int] | None:
    """The last ``(ms, seq)`` a review point covers (an entry id, or epoch ms: that whole
    millisecond), comparable with an entry id's; ``None`` when ``point`` is neither."""
    from core.redis.dead_letters import is_entry_id  # not at import: see TYPE_CHECKING above

    if not is_entry_id(point):
        return None
    ms, _, seq = point.partition("-")
    return int(ms), int(seq) if seq else _MAX_SEQ


def checked_point(point: str) -> tuple[int, int]:
    """:func:`review_key` of ``point``; :class:`ConfigError` (``--dlq-reviewed-before``) when it is
    neither an entry id nor epoch ms."""
    key = review_key(point)
    if key is None:
        accepted = ["a dead-letter id like 1767225600000-0", "epoch ms (that whole millisecond)"]
        raise ConfigError("--dlq-reviewed-before", point, accepted)
    return key


def _after_reviewed(value: str | None) -> str:
    """The XRANGE start of the entries newer than ``value`` (an entry id, or epoch ms: that
    whole millisecond is reviewed)."""
    if not value:
        return "-"
    ms, seq = checked_point(value)
    return f"({ms}-{seq}"


def later_point(a: str | None, b: str | None) -> str | None:
    """The later of two review points (entry ids or epoch ms); ``None`` when both are unset."""
    if not a or not b:
        return a or b
    return a if checked_point(a) >= checked_point(b) else b


async def _unreviewed(redis: AsyncClient, key: str, start: str, replayed: set[str]) -> int:
    count, page = 0, _PAGE
    while True:
        entries: Any = await redis.xrange(key, min=start, max="+", count=page)
        count += sum(1 for raw_id, _ in entries if _text(raw_id) not in replayed)
        if len(entries) < page:
            return count
        start = "(" + _text(entries[-1][0])


async def review_dead_letters(
    redis: AsyncClient, keys: KeySpace, reviewed_before: str | None
) -> dict[str, Any]:
    """Per topic: ``entries`` in its dead-letter stream, ``unreviewed`` ones, ``replayed_kept`` marks,
    and ``reviewed_through`` when a review was recorded (``cdb dlq review``); a recorded review
    that is no entry id counts for nothing and ``reviewed_through`` says so.

    A ``reviewed_before`` that is no entry id (nor epoch ms) raises :class:`ConfigError`."""
    if reviewed_before:
        checked_point(reviewed_before)
    data: dict[str, Any] = {}
    for topic in Topic:
        marks: Any = await redis.hgetall(keys.dlq_replayed(topic))  # HGETALL: what the operator ACL allows
        fields = {_text(k): _text(v) for k, v in marks.items()}
        recorded = fields.pop(REVIEWED_FIELD, None) or None  # "": cleared by `cdb dlq review`
        replayed = set(fields)
        shown = recorded
        if recorded is not None and review_key(recorded) is None:
            # Not an id: it reviews nothing (guessing a point could hide letters), and says so.
            shown = (
                f"none: the recorded {recorded!r} is not a dead-letter id, "
                f"record the review again with `cdb dlq review --topic {topic.value}`"
            )
            recorded = None
        start = _after_reviewed(later_point(reviewed_before, recorded))
        data[topic.value] = {
            "entries": int(await redis.xlen(keys.dlq(topic))),
            "unreviewed": await _unreviewed(redis, keys.dlq(topic), start, replayed),
            "replayed_kept": len(replayed),
        }
        if shown is not None:
            data[topic.value]["reviewed_through"] = shown
    return data
