"""Marking results published once per batch, not once per order.

Execution publishes a batch's results together, right after storing them
(:meth:`services.execution.service.ExecutionService.finish_batch`, :mod:`services.execution.once`),
and records the stream id each got in the store (``published_stream_id``). That record used to
be one ``UPDATE`` and one commit per order; :class:`PendingMarks` queues it instead, and the
consumer's ``before_ack`` hook writes a whole batch's marks in one statement before the batch is
acknowledged.

Why deferring the mark keeps every guarantee (tests/test_execution_once.py):

* **The publish does not depend on the mark.** One result per order on the stream comes from the
  Redis script's per-order marker: whoever publishes an order a second time (a redelivery, a
  retry, another instance) gets the first stream id back and adds nothing, whether or not the
  database says "published". A mark that is late, lost or never written cannot add a result.
* **Acknowledged implies marked.** :meth:`PendingMarks.flush` returns only once every mark queued
  before it was called is committed: a mark leaves the queue only after a write of it succeeded,
  so a flush writes every mark still queued, including those whose earlier flush failed. (A lock
  makes a flush wait for one in flight, e.g. another partition's batch sharing this service, so
  the marks that one writes are not written twice.) If it raises, the consumer acknowledges
  nothing of the batch: its orders come back, find their row unpublished, get the first stream
  id back from the script (``results_already_published``) and queue their mark again.
* **Even acknowledged-unmarked would not double publish.** Should an order ever be acknowledged
  with its row unmarked, a later redelivery of it behaves as after a failed mark: the script
  finds the marker and returns the first id. Only after the marker expires (``marker_ttl_s``,
  7 days) would it be published again, and so would a marked one: the script cannot tell an
  expired marker from a result the server lost, and republishes both (by design, see
  :mod:`services.execution.once`).
  The mark is the lasting audit record and decides which counter a redelivery adds to, never
  whether a result is published.
* **A redelivery before the flush is a duplicate, as before.** The same order read twice within
  one batch (its mark queued, not yet written) is recognised here (:meth:`PendingMarks.holds`)
  and counted as a duplicate, exactly as when the first delivery marked its row at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

__all__ = ["PendingMarks"]

MarkMany = Callable[[Sequence[tuple[str, str]]], Awaitable[None]]
"""Writes ``(order_id, stream_id)`` marks at once, all or (raising) none."""


class PendingMarks:
    """Stream ids of published results not yet recorded in the store, written per batch."""

    def __init__(self) -> None:
        self._queued: dict[str, str] = {}
        self._failed: set[str] = set()
        self._lock = asyncio.Lock()

    def add(self, order_id: str, stream_id: str) -> None:
        """Queue ``order_id``'s mark (a newer one for the same order replaces it)."""
        self._queued[order_id] = stream_id
        self._failed.discard(order_id)

    def holds(self, order_id: str) -> bool:
        """Whether ``order_id`` was published and its mark is queued (not yet written, and no
        flush of it has failed: after a failure its redelivery finishes the job as if unmarked)."""
        return order_id in self._queued and order_id not in self._failed

    def __len__(self) -> int:
        return len(self._queued)

    async def flush(self, mark_many: MarkMany) -> int:
        """Write every queued mark with one ``mark_many`` call; returns how many were written.

        On return, every mark queued before the call is committed. If ``mark_many`` raises,
        the marks stay queued (flagged failed) and the error propagates.
        """
        async with self._lock:
            taken = list(self._queued.items())
            if not taken:
                return 0
            try:
                await mark_many(taken)
            except BaseException:
                self._failed.update(order_id for order_id, _ in taken)
                raise
            for order_id, stream_id in taken:
                # A mark queued again meanwhile (a republish after a loss) waits for the next flush.
                if self._queued.get(order_id) == stream_id:
                    del self._queued[order_id]
                    self._failed.discard(order_id)
            return len(taken)
