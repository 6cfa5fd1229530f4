"""The dead-letter stream ``<topic>_dlq``: where bad input is parked, never dropped.

An entry keeps everything needed to understand and replay the message: the raw
bytes (a stream entry's field map rendered as JSON), the structured errors
(``ContractError.loggable_errors()`` or the exception), the service, path and
profile that refused it, the id it had in the topic stream, how often it was
delivered, and when it was parked (epoch ms from the injectable clock).
``redis-cli XRANGE <topic>_dlq - +`` shows it readably.

Bounded in bytes, not only in entries: a raw payload longer than ``max_payload_bytes``
(``DLQ_MAX_PAYLOAD_BYTES``; by default twice ``MAX_MESSAGE_BYTES`` plus 4 KiB) keeps
only its first bytes, with its original size (``raw_size``) and SHA-256 (``raw_sha256``)
beside them, so a flood of huge payloads cannot fill Redis through the dead letters
(30 letters of 1 MB took 31 MB). Every message that passed the size check stays whole
and replayable; a truncated letter is shown as such and never replayed.

Writers: the stream consumer (decode failures, handlers that keep failing) and
ws (exchange frames it cannot decode). Readers: ``cdb dlq`` through
:func:`read_dead_letters` / :func:`count_dead_letters` (blocking client) or
:meth:`DeadLetters.read` / :meth:`DeadLetters.count` (asyncio).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from core.errors import ContractError, ErrorDetail
from core.logging import get_logger
from core.redis.modes import AsyncClient, SyncClient
from core.redis.retry import RetryPolicy, call_async
from core.topics import KeySpace, ServiceName, Topic
from core.utils.clock import now_ms

__all__ = [
    "DEFAULT_DLQ_MAXLEN",
    "DEFAULT_DLQ_MAX_PAYLOAD_BYTES",
    "DeadLetter",
    "DeadLetterCause",
    "DeadLetters",
    "cap_payload",
    "count_dead_letters",
    "is_entry_id",
    "letter_fields",
    "read_dead_letters",
]

DEFAULT_DLQ_MAXLEN = 100_000
"""Approximate bound of a dead-letter stream; the ``dead_letters`` counter keeps the full count."""

DEFAULT_DLQ_MAX_PAYLOAD_BYTES = 2 * 65_536 + 4_096
"""Raw bytes a dead letter keeps whole by default: twice the default MAX_MESSAGE_BYTES (a field
map rendered as JSON escapes its values' quotes) plus room for the field names."""

_MAX_EXCEPTION_TEXT = 1_000
_log = get_logger("core.redis.dead_letters")

LetterFields = dict[str, bytes | str]

_ENTRY_ID = re.compile(r"[0-9]{1,20}(?:-[0-9]{1,20})?")


def is_entry_id(text: str) -> bool:
    """Whether ``text`` is a stream entry id (``1767225600000-0``, or the ms part alone), the
    form XRANGE accepts; anything else makes Redis answer with an error."""
    if _ENTRY_ID.fullmatch(text) is None:
        return False
    return all(int(part) < 2**64 for part in text.split("-"))


class DeadLetterCause(StrEnum):
    """Why an entry was parked."""

    INVALID = "invalid"
    """It did not decode (a :class:`~core.errors.ContractError`, including oversized payloads)."""
    HANDLER_FAILED = "handler_failed"
    """It decoded, but the handler kept raising (or consumers kept dying) up to max deliveries."""


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One dead-letter entry as read back, with its errors parsed."""

    entry_id: str
    topic: str
    service: str
    path: str
    profile: str | None
    stream_id: str
    cause: str
    reason: str
    errors: list[ErrorDetail]
    raw: bytes
    time_ms: int
    deliveries: int
    raw_size: int = 0
    """Size of the original payload in bytes (``len(raw)`` unless truncated)."""
    raw_sha256: str | None = None
    """SHA-256 (hex) of the original payload, kept when ``raw`` was truncated."""
    partition: int | None = None
    """The partition stream the original entry was read from (``None``: not recorded). Entry
    ids are unique per stream only, so two partitions can hold different entries under one id."""

    @property
    def truncated(self) -> bool:
        """Whether ``raw`` holds only the first bytes of the payload (it cannot be replayed)."""
        return self.raw_size > len(self.raw)

    @classmethod
    def from_entry(cls, entry_id: bytes | str, fields: Mapping[Any, Any]) -> DeadLetter:
        """Parse a dead-letter stream entry; tolerant of missing fields (older writers)."""
        get = {_text(k): v for k, v in fields.items()}.get
        error_text = _text(get("error", b"[]"))
        try:
            errors = json.loads(error_text)
        except ValueError:
            errors = [{"type": "other", "loc": [], "msg": error_text}]
        raw = get("raw", b"")
        raw = raw if isinstance(raw, bytes) else str(raw).encode("utf-8")
        return cls(
            entry_id=_text(entry_id),
            topic=_text(get("topic", b"")),
            service=_text(get("service", b"")),
            path=_text(get("path", b"")),
            profile=_text(get("profile", b"")) or None,
            stream_id=_text(get("stream_id", b"")),
            cause=_text(get("cause", b"")),
            reason=_text(get("reason", b"")),
            errors=errors if isinstance(errors, list) else [errors],
            raw=raw,
            time_ms=int(_text(get("time_ms", b"0")) or 0),
            deliveries=int(_text(get("deliveries", b"0")) or 0),
            raw_size=max(len(raw), int(_text(get("raw_size", b"0")) or 0)),
            raw_sha256=_text(get("raw_sha256")) if get("raw_sha256") else None,
            partition=_partition(_text(get("partition", b""))),
        )


def _partition(text: str) -> int | None:
    return int(text) if text.isdigit() else None


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def cap_payload(fields: Mapping[str, bytes | str], limit: int | None) -> Mapping[str, bytes | str]:
    """``fields`` of one dead letter with a ``raw`` longer than ``limit`` bytes cut to its first
    ``limit`` bytes, plus ``raw_size`` (the original size) and ``raw_sha256`` (of the original);
    unchanged when it fits or ``limit`` is None."""
    raw = fields.get("raw")
    if limit is None or raw is None:
        return fields
    data = raw if isinstance(raw, bytes) else raw.encode("utf-8", errors="surrogatepass")
    if len(data) <= limit:
        return fields
    digest = hashlib.sha256(data).hexdigest()
    return {**fields, "raw": data[:limit], "raw_size": str(len(data)), "raw_sha256": digest}


def _exception_errors(exc: BaseException) -> list[ErrorDetail]:
    text = str(exc)
    if len(text) > _MAX_EXCEPTION_TEXT:
        text = text[: _MAX_EXCEPTION_TEXT - 3] + "..."
    name = f"{type(exc).__module__}.{type(exc).__qualname__}"
    return [{"type": "handler_error", "loc": [], "msg": text, "exception": name}]


def letter_fields(
    topic: Topic,
    raw: bytes,
    error: ContractError | BaseException | Sequence[ErrorDetail],
    *,
    service: ServiceName | str,
    path: str,
    profile: str | None = None,
    stream_id: str = "",
    partition: int | None = None,
    deliveries: int = 0,
    cause: DeadLetterCause | None = None,
    reason: str | None = None,
) -> LetterFields:
    """The field map of one dead-letter entry.

    ``error``: a :class:`ContractError` (cause ``invalid``, its structured errors),
    any other exception (cause ``handler_failed``, type and message), or ready-made
    error details (give ``cause`` and ``reason``).
    """
    if isinstance(error, ContractError):
        errors, default_cause, default_reason = error.loggable_errors(), DeadLetterCause.INVALID, error.reason
    elif isinstance(error, BaseException):
        errors, default_cause, default_reason = (
            _exception_errors(error),
            DeadLetterCause.HANDLER_FAILED,
            "handler_error",
        )
    else:
        errors = [dict(e) for e in error]
        default_cause = DeadLetterCause.HANDLER_FAILED
        default_reason = str(errors[0].get("type", "other")) if errors else "other"
    return {
        "topic": topic.value,
        "service": service.value if isinstance(service, ServiceName) else service,
        "path": str(path),
        "profile": str(profile or ""),
        "stream_id": stream_id,
        "partition": "" if partition is None else str(partition),
        "cause": (cause or default_cause).value,
        "reason": reason or default_reason,
        "error": json.dumps(errors, default=str, ensure_ascii=False),
        "deliveries": str(deliveries),
        "time_ms": str(now_ms()),
        "raw": raw,
    }


class DeadLetters:
    """Writes and reads the dead-letter streams of one key space (asyncio)."""

    def __init__(
        self,
        redis: AsyncClient,
        keys: KeySpace | None = None,
        *,
        maxlen: int | None = DEFAULT_DLQ_MAXLEN,
        retry: RetryPolicy | None = None,
        max_payload_bytes: int | None = DEFAULT_DLQ_MAX_PAYLOAD_BYTES,
    ) -> None:
        self.redis = redis
        self.keys = keys if keys is not None else KeySpace()
        self.maxlen = maxlen
        self.max_payload_bytes = max_payload_bytes
        self.truncated = 0
        """Letters whose payload this writer cut (also logged as ``dead_letter.truncated``)."""
        self.retry = retry if retry is not None else RetryPolicy()

    async def park(
        self,
        topic: Topic,
        raw: bytes,
        error: ContractError | BaseException | Sequence[ErrorDetail],
        *,
        service: ServiceName | str,
        path: str,
        profile: str | None = None,
        stream_id: str = "",
        deliveries: int = 0,
        cause: DeadLetterCause | None = None,
        retry: RetryPolicy | None = None,
    ) -> str:
        """Write one dead letter; returns its id. :class:`TransportError` if Redis stays down
        (through ``retry``, by default this writer's policy)."""
        fields = letter_fields(
            topic,
            raw,
            error,
            service=service,
            path=path,
            profile=profile,
            stream_id=stream_id,
            deliveries=deliveries,
            cause=cause,
        )
        return (await self.park_many(topic, [fields], retry=retry))[0]

    async def park_many(
        self, topic: Topic, letters: Sequence[Mapping[str, bytes | str]], *, retry: RetryPolicy | None = None
    ) -> list[str]:
        """Write dead letters (from :func:`letter_fields`) in one round trip; returns their ids.

        Retried on connection errors (``retry``, by default this writer's policy), so a letter
        may be written twice (at-least-once). A raw
        payload over ``max_payload_bytes`` is cut (:func:`cap_payload`), counted and logged.
        """
        if not letters:
            return []
        letters = [self._capped(topic, fields) for fields in letters]
        key = self.keys.dlq(topic)
        trim: dict[str, Any] = {"maxlen": self.maxlen, "approximate": True} if self.maxlen else {}

        async def write() -> list[Any]:
            pipe = self.redis.pipeline(transaction=False)
            for fields in letters:
                pipe.xadd(key, dict[Any, Any](fields), **trim)
            return list(await pipe.execute())

        ids = await call_async(retry or self.retry, f"XADD {key}", write)
        return [_text(i) for i in ids]

    def _capped(self, topic: Topic, fields: Mapping[str, bytes | str]) -> Mapping[str, bytes | str]:
        capped = cap_payload(fields, self.max_payload_bytes)
        if capped is not fields:
            self.truncated += 1
            _log.warning(
                "dead_letter.truncated",
                topic=topic.value,
                stream_id=str(fields.get("stream_id", "")),
                size=int(capped["raw_size"]),
                kept=self.max_payload_bytes,
                sha256=str(capped["raw_sha256"]),
            )
        return capped

    async def read(self, topic: Topic, *, count: int = 100, newest_first: bool = True) -> list[DeadLetter]:
        """Up to ``count`` dead letters of ``topic``, newest first unless told otherwise."""
        key = self.keys.dlq(topic)
        if newest_first:
            entries: Any = await self.redis.xrevrange(key, count=count)
        else:
            entries = await self.redis.xrange(key, count=count)
        return [DeadLetter.from_entry(i, f) for i, f in entries]

    async def count(self, topic: Topic) -> int:
        """How many dead letters ``topic`` holds now."""
        return int(await self.redis.xlen(self.keys.dlq(topic)))

    async def parked(self, topic: Topic, partition: int = 0) -> set[bytes]:
        """Stream ids of the entries of ``topic``'s partition ``partition`` that are parked here
        and were not read again in place since (``cdb dlq catch-up`` marks a letter with its own
        stream id): their group finished them without handling them, so a state rebuild must not
        apply them (a replayed copy, if any, is a later entry of its own). A letter that does not
        record its partition counts for every partition."""
        first: Any = await self.redis.xrange(self.keys.stream(topic, partition), count=1)
        if not first:
            return set()  # an empty stream holds no entry to leave out
        # A letter is parked after its entry was read, so one parked before the stream's first
        # entry (less a margin for the clocks of a cluster's nodes) names an entry trimmed away:
        # only the letters from there on are read, not the whole dead-letter stream.
        first_ms = int(_text(first[0][0]).partition("-")[0])
        key, ids, start = self.keys.dlq(topic), set[bytes](), f"{max(first_ms - _CLOCK_MARGIN_MS, 0)}-0"
        marks: Any = await self.redis.hgetall(self.keys.dlq_replayed(topic))
        in_place = {_text(k): _text(v) for k, v in marks.items()}
        while True:
            entries: Any = await self.redis.xrange(key, min=start, count=_PARKED_PAGE)
            for entry_id, fields in entries:
                get = {_text(k): v for k, v in fields.items()}.get  # two fields, not the whole letter
                stream_id = _text(get("stream_id", b""))
                if not stream_id or _partition(_text(get("partition", b""))) not in (None, partition):
                    continue
                if in_place.get(_text(entry_id)) != stream_id:
                    ids.add(stream_id.encode())
            if len(entries) < _PARKED_PAGE:
                return ids
            start = "(" + _text(entries[-1][0])


_PARKED_PAGE = 1_000
_CLOCK_MARGIN_MS = 60_000


def read_dead_letters(
    client: SyncClient,
    topic: Topic,
    *,
    keys: KeySpace | None = None,
    count: int = 100,
    newest_first: bool = True,
) -> list[DeadLetter]:
    """Up to ``count`` dead letters of ``topic`` through a blocking client (for ``cdb dlq``)."""
    key = (keys or KeySpace()).dlq(topic)
    entries: Any = client.xrevrange(key, count=count) if newest_first else client.xrange(key, count=count)
    return [DeadLetter.from_entry(i, f) for i, f in entries]


def count_dead_letters(client: SyncClient, topic: Topic, *, keys: KeySpace | None = None) -> int:
    """How many dead letters ``topic`` holds now, through a blocking client."""
    return int(client.xlen((keys or KeySpace()).dlq(topic)))
