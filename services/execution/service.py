"""The execution service: orders in, paper fills out (stream + Pub/Sub + database)."""

from __future__ import annotations

from core.codec import Decoded
from core.logging import get_logger
from core.metrics import IgnoreReason
from core.topics import Topic
from services.execution.once import OncePublisher
from services.execution.paper import PaperVenue, VenueParams
from services.execution.store import ResultStore, StoredResult
from services.runtime import ServiceContext

__all__ = ["ExecutionService"]

_log = get_logger("services.execution")


class ExecutionService:
    """Fills each order once: a redelivered order neither fills again nor adds a row."""

    def __init__(self, ctx: ServiceContext, store: ResultStore, params: VenueParams | None = None) -> None:
        self.ctx = ctx
        self.store = store
        self.venue = PaperVenue(params)
        self.results = OncePublisher(ctx.publisher, Topic.ORDER_RESULTS)

    async def start(self) -> None:
        """Run the database migrations."""
        await self.store.migrate()

    async def handle(self, decoded: Decoded, entry_id: str) -> None:
        """Fill, store, publish once, mark published; on redelivery finish what is missing.

        Exactly one result per order reaches the stream whichever step fails: the store keeps
        the first fill, the publish is idempotent per order id in Redis, and the mark records
        the stream id. Publishes at once, not deferred: the mark needs the confirmed stream id
        (and orders are a few per cent of market data).
        """
        order = decoded.message
        stored = await self.store.get(order.order_id)
        if stored is not None and stored.published:
            await self._verify_published(order.order_id, stored)
            return
        values = stored.values if stored is not None else self.venue.fill(order)
        if stored is None:
            await self.store.insert(values, self.ctx.codec.path.value)
        result = self.ctx.codec.build(Topic.ORDER_RESULTS, values)
        # Idempotent in Redis (services.execution.once): after a failed mark, the redelivery
        # gets the first stream id back instead of publishing the result a second time.
        published = await self.results.publish(order.order_id, result)
        if not published.new:
            self.ctx.count("results_already_published")
        await self.store.mark_published(order.order_id, published.stream_id)
        self.ctx.count("fills" if values["status"] in ("FILLED", "PARTIALLY_FILLED") else "rejected_orders")

    async def _verify_published(self, order_id: str, stored: StoredResult) -> None:
        """A redelivered order whose result the store marks published: trust the mark only if
        the stream still holds that result (services.execution.once checks it in the same
        script); a result the server lost (older snapshot, a replica behind) is published again."""
        result = self.ctx.codec.build(Topic.ORDER_RESULTS, stored.values)
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
        await self.store.mark_published(order_id, published.stream_id)

    async def close(self) -> None:
        """Nothing to release: whoever opened the store closes it."""
