"""Outputs a handler deferred, waiting for the batch's flush, each tied to the input that made it.

A service's handler queues its outputs (:meth:`Publisher.defer`); the stream consumer
flushes them once per batch, before the batch is acknowledged. So that one bad message
never harms another, every output here remembers its **source** (the stream entry id
the handler was given): when that handler fails, its outputs are taken back
(:meth:`Outbox.discard`); when one output cannot be sent, only its source is
dead-lettered and the rest of the batch goes out (:meth:`Publisher.flush_outputs`).

Outputs are encoded when they are deferred, down to the UTF-8 the wire writes
(:func:`utf8_checked`), so a message that cannot be written fails in the handler that
made it, not in the flush of a whole batch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from core.codec import Codec
from core.errors import ContractError
from core.redis.guarded import LeaseGuard
from core.topics import Topic

__all__ = ["Deferred", "DeferredOutputs", "Outbox", "unpackable", "utf8_checked"]

Deferred = tuple[bytes, dict[str, str], int, str | None]
"""A deferred output: its Pub/Sub body, stream field map, partition, and its source entry id."""


class DeferredOutputs(Protocol):
    """What a stream consumer needs of a publisher with deferred outputs (:class:`Publisher`)."""

    def begin(self, source: str | None) -> None:
        """Outputs queued from now on come from stream entry ``source``."""
        ...

    def discard(self, source: str) -> int:
        """Drop what ``source`` queued (its handler failed)."""
        ...

    async def flush_outputs(self, guard: LeaseGuard | None = None) -> dict[str, BaseException]:
        """Send everything queued; ``{source: error}`` for inputs whose outputs could not be sent
        (the rest were); raises TransportError when nothing can be confirmed. With ``guard``,
        only while that lease is held (LeaseLostError otherwise), checked by the server with
        the writes where it can (:mod:`core.redis.guarded`)."""
        ...

    @property
    def deferred(self) -> int:
        """How many outputs are queued (0: a flush would send nothing)."""
        ...


class Outbox:
    """Deferred outputs per topic, in order, each with its source."""

    __slots__ = ("_queues", "_source")

    def __init__(self) -> None:
        self._queues: dict[Topic, list[Deferred]] = {}
        self._source: str | None = None

    def add(self, topic: Topic, body: bytes, fields: dict[str, str], partition: int) -> None:
        """Queue one encoded output, tied to the current source."""
        self._queues.setdefault(topic, []).append((body, fields, partition, self._source))

    def begin(self, source: str | None) -> None:
        """Outputs added from now on come from ``source`` (``None``: from no input)."""
        self._source = source

    def discard(self, source: str) -> int:
        """Drop every output ``source`` added; returns how many."""
        dropped = 0
        for topic, queue in self._queues.items():
            kept = [item for item in queue if item[3] != source]
            dropped += len(queue) - len(kept)
            self._queues[topic] = kept
        return dropped

    def take(self) -> dict[Topic, list[Deferred]]:
        """Everything queued (the outbox is empty afterwards, its source reset)."""
        queued, self._queues, self._source = self._queues, {}, None
        return queued

    def __len__(self) -> int:
        return sum(len(q) for q in self._queues.values())


def unpackable(items: Sequence[Deferred], pack: Callable[[Deferred], object]) -> dict[int, BaseException]:
    """The positions of ``items`` that ``pack`` refuses alone, with its error."""
    bad: dict[int, BaseException] = {}
    for i, item in enumerate(items):
        try:
            pack(item)
        except Exception as exc:
            bad[i] = exc
    return bad


def utf8_checked(codec: Codec, topic: Topic, body: bytes, fields: dict[str, str]) -> None:
    """Refuse (:class:`~core.errors.ContractError`, reason ``serialization``) a stream field map
    the wire cannot write: a value holding a lone surrogate (``"\\ud800"`` decoded by a lenient
    reader) has no UTF-8 form, and finding out while packing a batch would fail the batch."""
    text = "".join(fields.values())
    if text.isascii():  # the common map: known at once, nothing encoded
        return
    try:
        text.encode("utf-8")
        return
    except UnicodeEncodeError:
        pass
    for name, value in fields.items():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ContractError(
                topic=topic.value,
                path=codec.path.value,
                profile=codec.profile.value if codec.profile else None,
                raw=body,
                errors=[
                    {
                        "type": "serialization",
                        "loc": (name,),
                        "msg": f"cannot be written as UTF-8 ({exc.reason} at position {exc.start})",
                    }
                ],
            ) from None
