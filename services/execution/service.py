"""The execution service: orders in, paper fills out (stream + Pub/Sub + database).

Its code is on contract v2.0 (:mod:`core.versions.own`): the order's size and price, the fill,
the stored row and the result it builds are exact decimals; the result is written in the version
``PRODUCE_VERSION_ORDER_RESULTS`` names (v1.0 by default, converted down by the codec). On the
legacy path (or in shadow mode) the codec hands it v1.0 floats and builds v1.0: the fill is the
same (:mod:`services.execution.paper`) and is moved to v1.0 by the declared converter. The
result carries the order's size (``ordered_quantity``, v1.1+; a v1.0 result drops it by the
declared down-conversion), stored with the fill so a result rebuilt from the row is the same.

Per order: one store round trip (:meth:`~services.execution.store.ResultStore.insert_or_get`)
and one Redis script (the publish); the marks of a whole batch are written in one statement in
:meth:`ExecutionService.before_ack`, which the consumer awaits before acknowledging the batch
(why that is safe: :mod:`services.execution.marks`).
"""

from __future__ import annotations

from typing import Any

from core.codec import Decoded, Message
from core.errors import TransportError
from core.logging import get_logger
from core.metrics import IgnoreReason
from core.topics import Topic
from core.versions.convert import convert_values
from core.versions.own import own_version
from services.execution.marks import PendingMarks
from services.execution.once import OncePublisher
from services.execution.paper import PaperVenue, VenueParams
from services.execution.store import ResultStore, StoredResult
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

    async def handle(self, decoded: Decoded, entry_id: str) -> None:
        """Fill, store, publish once, queue the mark; on redelivery finish what is missing.

        Exactly one row and one result per order reach the store and the stream whichever
        step fails: the store keeps the first fill (and the result is built from the stored
        row, so a redelivery rebuilds the very same one), the publish is idempotent per order
        id in Redis, and the mark records the stream id (:meth:`before_ack`, per batch).
        Publishes at once, not deferred: the mark needs the confirmed stream id (and orders
        are a few per cent of market data).
        """
        order = decoded.message
        # The fill is deterministic and cheap: computing it for a redelivered order (whose
        # row wins) saves the separate read that used to come first.
        stored = await self.store.insert_or_get(self.venue.fill(order), self.ctx.codec.path.value)
        if stored.published or self.marks.holds(order.order_id):
            await self._verify_published(order.order_id, stored)
            return
        values = stored.values
        result = self._result(values)
        # Idempotent in Redis (services.execution.once): after a failed mark, the redelivery
        # gets the first stream id back instead of publishing the result a second time.
        published = await self.results.publish(order.order_id, result)
        if not published.new:
            self.ctx.count("results_already_published")
        self.marks.add(order.order_id, published.stream_id)
        self.ctx.count("fills" if values["status"] in ("FILLED", "PARTIALLY_FILLED") else "rejected_orders")

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

    async def _verify_published(self, order_id: str, stored: StoredResult) -> None:
        """A redelivered order whose result is marked published (in the store, or queued): trust
        the mark only if the stream still holds that result (services.execution.once checks it
        in the same script); a result the server lost (older snapshot, a replica behind) is
        published again."""
        result = self._result(stored.values)
        published = await self.results.publish(order_id, result)
        if not published.new:
            # ``duplicate_orders`` is kept for existing readers (the matrix's kill fault).
            self.ctx.count("duplicate_orders")
            self.ctx.ignore(Topic.ORDERS, IgnoreReason.DUPLICATE, order_id=order_id)
            return
        _log.error(
            "execution.result_lost",
            order_id=order_id,
            republished_as=published.stream_id,
        )
        self.ctx.count("results_republished")
        self.marks.add(order_id, published.stream_id)

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
