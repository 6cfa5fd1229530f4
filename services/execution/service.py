"""The execution service: orders in, paper fills out (stream + Pub/Sub + database).

Its code is on contract v2.0 (:mod:`core.versions.own`): the order's size and price, the fill,
the stored row and the result it builds are exact decimals; the result is written in the version
``PRODUCE_VERSION_ORDER_RESULTS`` names (v1.0 by default, converted down by the codec). On the
legacy path the codec hands it v1.0 floats and builds v1.0 (in shadow mode it hands it v1.0 and
builds v2.0 as usual): the fill is the same (:mod:`services.execution.paper`) and is moved to
v1.0 by the declared converter. The
result carries the order's size (``ordered_quantity``, v1.1+; a v1.0 result drops it by the
declared down-conversion), stored with the fill so a result rebuilt from the row is the same.

Per batch, not per order (the consumer's batch step, :meth:`ExecutionService.finish_batch`):
:meth:`~ExecutionService.handle` only fills the order (deterministic, cheap) and returns it; once
the batch's handlers ran, one store round trip stores every fill and returns every stored row
(:meth:`~services.execution.store.ResultStore.insert_or_get_many`, one commit), the results are
built from those rows and published in one Redis round trip under the partition's lease
(:meth:`~services.execution.once.OncePublisher.publish_many`: on one server each script checks
the lease before it writes, so the check costs no round trip of its own), and the marks of the batch are
written in one statement by :meth:`ExecutionService.before_ack`, which the consumer awaits
next, before acknowledging the batch (why deferring marks is safe: :mod:`services.execution.marks`).
So a batch of k orders waits for one commit and one Redis round trip, not k of each.

What fails where (every guarantee of the one-order path holds, tests/test_execution_batch.py):

* The store or Redis unreachable (or replicas short): :meth:`finish_batch` raises
  :class:`~core.errors.TransportError`; nothing of the batch is acknowledged, it comes back, and
  the store (first fill kept) and the publish scripts (per-order markers) make the redelivery
  add no second row or result.
* One order's fill fails: its handler raises (retry, dead letter), as before. Its result cannot
  be built or encoded, or Redis refuses its script: :meth:`finish_batch` returns that error for
  its entry alone, which the consumer settles as a failed handler (``ContractError``: dead letter
  at once; else retried); the other orders are stored, published and marked.
* Store-first: nothing is published before the batch's insert has committed.
* The lease lost (a stale owner, frozen past ``PARTITION_LEASE_MS``): no result is published and
  nothing is marked or acknowledged (:class:`~core.errors.LeaseLostError`). Fills it stored
  after it read the orders under its lease stay: they are the rows the next owner finds (the
  first fill is kept) and publishes, the same rows it would have found had the stale owner
  stopped right after its commit, so the trades are the same.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from core.codec import Decoded, Message
from core.errors import ContractError, TransportError
from core.logging import get_logger
from core.metrics import IgnoreReason
from core.redis.guarded import LeaseGuard
from core.topics import Topic
from core.versions.convert import convert_values
from core.versions.own import own_version
from services.execution.marks import PendingMarks
from services.execution.once import OncePublisher, Published
from services.execution.paper import PaperVenue, VenueParams
from services.execution.store import ResultStore, RowRefusedError, StoredResult
from services.runtime import ServiceContext

__all__ = ["ExecutionService"]

_log = get_logger("services.execution")

_FILL_VERSION = "v2.0"
"""The contract version of the venue's fill values and of the stored row (exact decimals)."""


class ExecutionService:
    """Fills each order once: a redelivered order neither fills again nor adds a row."""

    def __init__(self, ctx: ServiceContext, store: ResultStore, params: VenueParams | None = None) -> None:
        self.ctx = ctx
        self.store = store
        self.venue = PaperVenue(params)
        self.results = OncePublisher(ctx.publisher, Topic.ORDER_RESULTS)
        self.marks = PendingMarks()

    async def start(self) -> None:
        """Run the database migrations."""
        await self.store.migrate()

    async def handle(self, decoded: Decoded, entry_id: str) -> dict[str, Any]:
        """The order's fill, for :meth:`finish_batch` (nothing stored or published yet). The
        fill is deterministic and cheap: computing it for a redelivered order (whose stored row
        wins) saves a read first."""
        return self.venue.fill(decoded.message)

    async def finish_batch(
        self, work: Mapping[str, object], guard: LeaseGuard | None = None
    ) -> dict[str, BaseException]:
        """Store, publish once and queue the mark of every fill of the batch (``{entry id:
        fill}``, as :meth:`handle` returned them); returns ``{entry id: error}`` for the orders
        that could not be finished (the others were). Raises
        :class:`~core.errors.TransportError` when the store or Redis fails for the whole batch,
        :class:`~core.errors.LeaseLostError` when ``guard``'s lease is lost: no result published,
        nothing marked (a row stored by then is the one the next owner finds and publishes).

        Exactly one row and one result per order whichever step fails: the store keeps the first
        fill and the result is built from the stored row (a redelivery rebuilds the very same
        one), the publish is idempotent per order id in Redis, and the mark records the stream id
        (:meth:`before_ack`). An order that comes twice in one batch is finished by its first
        entry; the second is a duplicate (or fails with the first's error).
        """
        fills = cast("Mapping[str, dict[str, Any]]", work)
        first: dict[str, str] = {}  # order id -> the entry that finishes it
        for entry_id, fill in fills.items():
            first.setdefault(fill["order_id"], entry_id)
        stored, refused = await self._store([fills[entry_id] for entry_id in first.values()])
        failed: dict[str, BaseException] = {first[order_id]: err for order_id, err in refused.items()}
        outgoing: list[tuple[str, Message]] = []  # (order id, result), one per order
        for order_id, entry_id in first.items():
            if order_id in refused:
                continue
            try:
                outgoing.append((order_id, self._result(stored[order_id].values)))
            except Exception as exc:  # this order's result cannot be built: it alone fails
                failed[entry_id] = exc
        outcomes = dict(
            zip((oid for oid, _ in outgoing), await self.results.publish_many(outgoing, guard), strict=True)
        )
        for order_id, outcome in outcomes.items():
            if isinstance(outcome, Exception):
                failed[first[order_id]] = outcome
            else:
                self._published(order_id, stored[order_id], outcome)
        for entry_id, fill in fills.items():
            order_id = fill["order_id"]
            if first[order_id] == entry_id:
                continue
            if first[order_id] in failed:
                failed[entry_id] = failed[first[order_id]]
            else:  # the same order twice in one batch: the first entry published it
                self._duplicate(order_id)
        return failed

    async def _store(
        self, rows: list[dict[str, Any]]
    ) -> tuple[dict[str, StoredResult], dict[str, ContractError]]:
        """Store every row (or find it stored); a row the store refuses for its values fails
        alone, as a :class:`~core.errors.ContractError` (``store_refused``: dead-lettered at once,
        storing it again would fail again), and the others are stored. Raises
        :class:`~core.errors.TransportError` when the store fails for the whole batch."""
        try:
            return await self.store.insert_or_get_many(rows, self.ctx.codec.path.value), {}
        except RowRefusedError as exc:
            if len(rows) == 1:
                return {}, {rows[0]["order_id"]: self._refused(rows[0], exc)}
        except Exception as exc:
            raise TransportError(
                f"execution could not store {len(rows)} results: {type(exc).__name__}: {exc}"
            ) from exc
        # A batch is stored whole or not at all: find the row at fault by storing each alone
        # (rare: only a batch holding such a row pays it).
        stored: dict[str, StoredResult] = {}
        refused: dict[str, ContractError] = {}
        for row in rows:
            got, bad = await self._store([row])
            stored.update(got)
            refused.update(bad)
        return stored, refused

    def _refused(self, row: dict[str, Any], exc: RowRefusedError) -> ContractError:
        codec = self.ctx.codec
        _log.warning("execution.store_refused", order_id=repr(row["order_id"]), error=str(exc))
        return ContractError(
            topic=Topic.ORDER_RESULTS.value,
            path=codec.path.value,
            profile=codec.profile.value if codec.profile else None,
            raw=repr(row).encode("utf-8", errors="backslashreplace"),
            errors=[{"type": "store_refused", "loc": (), "msg": f"the result store refused the fill: {exc}"}],
        )

    def _published(self, order_id: str, stored: StoredResult, published: Published) -> None:
        """Count the publish of a stored order and queue its mark."""
        if stored.published or self.marks.holds(order_id):
            # Marked published (in the store, or queued): the script found the result still on
            # the stream (services.execution.once checks it), or the server had lost it (an
            # older snapshot, a replica behind) and it was published again.
            if not published.new:
                self._duplicate(order_id)
                return
            _log.error("execution.result_lost", order_id=order_id, republished_as=published.stream_id)
            self.ctx.count("results_republished")
        else:
            if not published.new:
                # After a failed mark the redelivery gets the first stream id back, no second result.
                self.ctx.count("results_already_published")
            status = stored.values["status"]
            self.ctx.count("fills" if status in ("FILLED", "PARTIALLY_FILLED") else "rejected_orders")
        self.marks.add(order_id, published.stream_id)

    def _duplicate(self, order_id: str) -> None:
        # ``duplicate_orders`` is kept for existing readers (the matrix's kill fault).
        self.ctx.count("duplicate_orders")
        self.ctx.ignore(Topic.ORDERS, IgnoreReason.DUPLICATE, order_id=order_id)

    async def before_ack(self) -> None:
        """Record every queued mark in one store call; the consumer awaits this before it
        acknowledges a batch. Raises :class:`~core.errors.TransportError` when the store
        fails: nothing of the batch is acknowledged, its orders come back and mark again."""
        try:
            await self.marks.flush(self.store.mark_published_many)
        except Exception as exc:
            raise TransportError(
                f"execution could not mark {len(self.marks)} results published: {type(exc).__name__}: {exc}"
            ) from exc

    def _result(self, values: dict[str, Any]) -> Message:
        """The result message of a fill (v2.0 values, as the venue and the store give them) in the
        version the codec builds: as they are on v2.0, else moved down by the declared converter."""
        own = own_version(self.ctx.codec, Topic.ORDER_RESULTS)
        if own != _FILL_VERSION:
            values = convert_values(
                Topic.ORDER_RESULTS, {**values, "api_version": _FILL_VERSION}, _FILL_VERSION, own
            )
            del values["api_version"]  # the codec sets its own
        return self.ctx.codec.build(Topic.ORDER_RESULTS, values)

    async def close(self) -> None:
        """Nothing to release: whoever opened the store closes it. Marks still queued belong to
        orders not acknowledged (their batch's :meth:`before_ack` did not succeed): they come
        back and mark again."""
