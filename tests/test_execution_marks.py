"""Execution's per-batch marks (services.execution.marks): written in one call, never lost by a
failed write, and a flush that returns means every mark queued before it is written."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from services.execution.marks import PendingMarks


class _Store:
    """Records each batch of marks; fails the next ``fail`` calls."""

    def __init__(self, fail: int = 0) -> None:
        self.fail = fail
        self.written: list[list[tuple[str, str]]] = []
        self.gate: asyncio.Event | None = None

    async def mark_many(self, marks: Sequence[tuple[str, str]]) -> None:
        if self.gate is not None:
            await self.gate.wait()
        if self.fail:
            self.fail -= 1
            raise ConnectionError("database down")
        self.written.append(list(marks))


async def test_marks__a_batch_is_written_in_one_call_and_then_forgotten() -> None:
    marks, store = PendingMarks(), _Store()
    marks.add("ord-1", "1-0")
    marks.add("ord-2", "2-0")
    assert marks.holds("ord-1")
    assert await marks.flush(store.mark_many) == 2
    assert store.written == [[("ord-1", "1-0"), ("ord-2", "2-0")]]
    assert not marks.holds("ord-1")
    assert await marks.flush(store.mark_many) == 0  # nothing queued: no call
    assert len(store.written) == 1


async def test_marks__a_failed_write_keeps_them_queued_but_no_longer_held() -> None:
    marks, store = PendingMarks(), _Store(fail=1)
    marks.add("ord-1", "1-0")
    with pytest.raises(ConnectionError):
        await marks.flush(store.mark_many)
    # Not trusted as published any more (the redelivery finishes the job as if unmarked) ...
    assert not marks.holds("ord-1")
    assert len(marks) == 1
    # ... and still written by the next flush, whoever calls it.
    assert await marks.flush(store.mark_many) == 1
    assert store.written == [[("ord-1", "1-0")]]
    assert len(marks) == 0


async def test_marks__queued_again_after_a_failure_it_is_held_again() -> None:
    marks, store = PendingMarks(), _Store(fail=1)
    marks.add("ord-1", "1-0")
    with pytest.raises(ConnectionError):
        await marks.flush(store.mark_many)
    marks.add("ord-1", "1-0")  # the redelivered order got the same id back from the script
    assert marks.holds("ord-1")


async def test_marks__a_flush_returns_only_once_marks_another_flush_took_are_written() -> None:
    # Two partitions' batches share one service: partition B's flush starts while A's write is
    # in flight with B's marks in it. B must not return (and B's batch be acknowledged) before
    # that write finished; and when it fails, B writes them itself.
    marks, store = PendingMarks(), _Store(fail=1)
    store.gate = asyncio.Event()
    marks.add("ord-a", "1-0")
    marks.add("ord-b", "2-0")
    first = asyncio.create_task(marks.flush(store.mark_many))
    await asyncio.sleep(0)  # A's flush has taken both marks and waits on the database
    second = asyncio.create_task(marks.flush(store.mark_many))
    await asyncio.sleep(0)
    assert not second.done()
    store.gate.set()
    with pytest.raises(ConnectionError):
        await first
    assert await second == 2
    assert store.written == [[("ord-a", "1-0"), ("ord-b", "2-0")]]


async def test_marks__a_flush_waits_for_one_in_flight_instead_of_writing_its_marks_twice() -> None:
    marks, store = PendingMarks(), _Store()
    store.gate = asyncio.Event()
    marks.add("ord-a", "1-0")
    first = asyncio.create_task(marks.flush(store.mark_many))
    await asyncio.sleep(0)
    second = asyncio.create_task(marks.flush(store.mark_many))
    await asyncio.sleep(0)
    store.gate.set()
    assert (await first, await second) == (1, 0)
    assert store.written == [[("ord-a", "1-0")]]


async def test_marks__a_newer_mark_queued_during_a_write_waits_for_the_next_flush() -> None:
    marks, store = PendingMarks(), _Store()
    store.gate = asyncio.Event()
    marks.add("ord-1", "1-0")
    flushing = asyncio.create_task(marks.flush(store.mark_many))
    await asyncio.sleep(0)
    marks.add("ord-1", "5-0")  # republished after a loss while the old id was being written
    store.gate.set()
    await flushing
    assert marks.holds("ord-1")
    await marks.flush(store.mark_many)
    assert store.written == [[("ord-1", "1-0")], [("ord-1", "5-0")]]
