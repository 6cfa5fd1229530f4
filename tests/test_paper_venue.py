"""The paper venue's answer is total (services/execution/paper.py): every valid order gets a valid
order result, never an exception, and the same one on the legacy and the Pydantic path, however
extreme its size or price (a float from ``5e-324`` to ``1.8e308`` is a valid v1.0 order).

A fill an order result could not carry (a size of nothing, a price or fee past the 64 characters of a
v2.0 decimal, a price of 0 at 8 decimals) is ``REJECTED`` with the reason. On the Pydantic path a
v1.0 order whose floats do not fit a v2.0 decimal is refused before the venue, by the v1 -> v2
conversion (``version_conversion``, core/versions); that is the one way the paths may differ here.
"""

from __future__ import annotations

import asyncio
import functools
import json
import sys
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import fakeredis
import pytest
import redis.asyncio as aioredis
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from core.codec import build_codec, codec_for
from core.domain.contracts import OrderResultV1, OrderV1
from core.errors import ContractError
from core.redis import StreamConsumer
from core.settings import ServiceSettings
from core.topics import CodecPath, KeySpace, Profile, ServiceName, Topic
from core.versions.changes import float_to_decimal
from core.versions.codec import VersionedCodec
from core.versions.convert import convert_values
from core.versions.fields import DECIMAL_MAX_CHARS, plain_decimal
from core.versions.models import OrderResultV2
from services.execution.paper import PaperVenue, VenueParams
from services.execution.service import ExecutionService
from services.execution.store import PostgresStore, SqliteStore
from services.runtime import ServiceContext
from tests.strategies import prices
from tests.support.execution import VenueOrder

NOW_MS = 1_767_225_600_000
ENTRY_ID = f"{NOW_MS}-0"  # the lenient reader takes a legacy result's missing timestamp from it

LOT_TOO_DEAR = "one lot (1e-06) costs more than the paper venue fills"
PRICE_UNCARRIED = "the fill's price does not fit an order result (at most 64 characters)"


def _order(order_type: str, quantity: float, price: float | None, side: str = "BUY") -> dict[str, Any]:
    """A v1.0 order as risk writes it (any finite float > 0 is a valid size or price)."""
    return {
        "order_id": "ord-1",
        "signal_id": "sig-1",
        "symbol": "BTC/USDT",
        "side": side,
        "order_type": order_type,
        "quantity": quantity,
        "price": price,
        "timestamp": NOW_MS,
    }


def _fits_v2(value: float | None) -> bool:
    """Whether the v1 -> v2 conversion carries ``value`` (a v2.0 decimal: at most 64 characters)."""
    return value is None or len(plain_decimal(float_to_decimal(value))) <= DECIMAL_MAX_CHARS


def _as_v2_result(fill: dict[str, Any]) -> OrderResultV2:
    """The fill as the Pydantic path builds its result (contract v2.0); raises if it is not one."""
    return OrderResultV2(**fill, timestamp=NOW_MS)


def _as_v1_result(fill: dict[str, Any]) -> OrderResultV1:
    """The fill moved to v1.0 by the declared down-conversion, as the legacy path builds its
    result and every v1.0 reader gets it; raises if it is not a valid v1.0 result."""
    values = convert_values(Topic.ORDER_RESULTS, {**fill, "api_version": "v2.0"}, "v2.0", "v1.0")
    return OrderResultV1(**values, timestamp=NOW_MS)


def _rejected(fill: dict[str, Any]) -> str:
    """The reason of a REJECTED fill (which fills nothing)."""
    assert (fill["status"], fill["filled_quantity"], fill["average_price"]) == ("REJECTED", 0, None), fill
    _as_v1_result(fill)
    return str(fill["reason"])


# --- the venue alone ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("quantity", "price"),
    [(1.0, 1e12), (Decimal(1), Decimal("1000000000000")), (0.1, 1e11), (1e-7, 1e10)],
    ids=["float", "decimal", "tenth-at-1e11", "tiny-at-1e10"],
)
def test_venue__limit_order_whose_one_lot_costs_more_than_the_venue_fills_is_rejected(
    quantity: float | Decimal, price: float | Decimal
) -> None:
    """Not PARTIALLY_FILLED with a size of 0, which no result contract allows."""
    fill = PaperVenue().fill(VenueOrder("o1", "X", "BUY", "LIMIT", quantity, price))
    assert _rejected(fill) == LOT_TOO_DEAR
    _as_v2_result(fill)


@pytest.mark.parametrize("price", [1e62, 1e72, 1e100, 1e300, sys.float_info.max])
@pytest.mark.parametrize("side", ["BUY", "SELL"])
def test_venue__market_fill_price_past_what_a_result_carries_is_rejected_not_an_exception(
    price: float, side: str
) -> None:
    """Its price at 8 decimals takes more than 64 characters: no result can carry the fill (past
    ~1e72 rounding it would also exceed the decimal context's 80 digits)."""
    fill = PaperVenue().fill(VenueOrder("o1", "X", side, "MARKET", 1.0, price))
    assert _rejected(fill) == PRICE_UNCARRIED


def test_venue__v2_limit_price_of_64_digits_is_rejected_as_too_dear_and_market_as_uncarried() -> None:
    price = Decimal("9" * DECIMAL_MAX_CHARS)  # the largest v2.0 price
    venue = PaperVenue()
    assert _rejected(venue.fill(VenueOrder("o1", "X", "BUY", "LIMIT", Decimal(1), price))) == LOT_TOO_DEAR
    assert _rejected(venue.fill(VenueOrder("o2", "X", "BUY", "MARKET", Decimal(1), price))) == PRICE_UNCARRIED


@pytest.mark.parametrize("price", [1e-9, 5e-324, Decimal("0.000000004")])
def test_venue__market_price_rounding_to_0_is_rejected_even_without_a_minimum_notional(
    price: float | Decimal,
) -> None:
    """A result's price is > 0: a fill at 0.00000000 is no fill, whatever the venue's minimum."""
    fill = PaperVenue(VenueParams(min_notional=0)).fill(VenueOrder("o1", "X", "BUY", "MARKET", 1.0, price))
    assert _rejected(fill) == "fill price not above 0 at 8 decimals"


def test_venue__sell_slipping_by_100_percent_or_more_is_rejected() -> None:
    venue = PaperVenue(VenueParams(min_notional=0, slippage_bps=10_000))
    fill = venue.fill(VenueOrder("o1", "X", "SELL", "MARKET", 1.0, 100.0))
    assert _rejected(fill) == "fill price not above 0 at 8 decimals"


def test_venue__fill_size_past_what_a_result_carries_is_rejected() -> None:
    """1e-70 is a valid float size, but 72 characters as a decimal: no v2.0 result carries it."""
    fill = PaperVenue(VenueParams(min_notional=0)).fill(VenueOrder("o1", "X", "BUY", "LIMIT", 1e-70, 1.0))
    assert _rejected(fill) == "the fill's size does not fit an order result (at most 64 characters)"


def test_venue__fee_past_what_a_result_carries_is_rejected_not_an_exception() -> None:
    """A venue allowed to fill 1e300 of notional: a 1e60 fill's fee has 58 digits before its 8
    decimals (1e117 of notional would not even round within the context's 80 digits)."""
    venue = PaperVenue(VenueParams(max_fill_notional=1e300))
    for quantity, price in [(1e40, 1e20), (1e60, 1e60)]:
        fill = venue.fill(VenueOrder("o1", "X", "BUY", "LIMIT", quantity, price))
        assert _rejected(fill) == "the fill's fee does not fit an order result (at most 64 characters)"


def test_venue__extreme_but_carried_fills_still_fill() -> None:
    """The limits above refuse only what a result cannot carry: tiny and huge fills that fit do fill."""
    venue = PaperVenue()
    tiny = venue.fill(VenueOrder("o1", "X", "BUY", "LIMIT", 1e-9, 1e10))
    assert (tiny["status"], tiny["filled_quantity"], tiny["fee"]) == (
        "FILLED",
        Decimal("1E-9"),
        Decimal("0.01"),
    )
    cheap = venue.fill(VenueOrder("o2", "X", "BUY", "LIMIT", 123456789.123, 1e-5))
    assert (cheap["status"], cheap["filled_quantity"]) == ("PARTIALLY_FILLED", Decimal("90000000"))
    for fill in (tiny, cheap):
        _as_v2_result(fill)
        _as_v1_result(fill)


def _v2_decimals() -> st.SearchStrategy[Decimal]:
    """Any valid v2.0 size or price: a plain decimal > 0 of at most 64 characters, the extremes
    (``0.000…1``, ``999…9``) weighted in."""
    scaled = st.builds(
        lambda digits, places: Decimal(digits).scaleb(-places),
        st.integers(1, 10**64 - 1) | st.integers(1, 10**9),
        st.integers(0, 63),
    ).filter(lambda d: len(plain_decimal(d)) <= DECIMAL_MAX_CHARS)
    edges = st.sampled_from(
        [Decimal("0." + "0" * 61 + "1"), Decimal("9" * 64), Decimal("1"), Decimal("64250.1")]
    )
    return scaled | edges


def _extreme_floats() -> st.SearchStrategy[float]:
    """Any valid v1.0 size or price (finite, > 0), every decade from 5e-324 to 1e308 weighted in."""
    decades = st.builds(lambda m, e: float(f"{m}e{e}"), st.integers(1, 99), st.integers(-325, 308))
    edges = st.sampled_from([5e-324, 2.2250738585072014e-308, 1e-62, 1e64, 1e72, sys.float_info.max])
    return (prices | decades | edges).filter(lambda f: 0 < f < float("inf"))


_ANY_PARAMS = st.builds(
    VenueParams,
    fee_bps=st.floats(0, 1e6),
    slippage_bps=st.floats(0, 2e4),
    max_fill_notional=st.floats(1e-300, 1e308) | st.sampled_from([900.0, 5e-324]),
    min_notional=st.floats(0, 1e308) | st.sampled_from([0.0, 10.0]),
    quantity_step=st.floats(1e-300, 1e10) | st.sampled_from([1e-6, 5e-324]),
)
"""Any valid venue settings (VenueParams' own bounds)."""


@settings(max_examples=300, deadline=None)
@given(
    params=_ANY_PARAMS,
    order_type=st.sampled_from(["MARKET", "LIMIT"]),
    side=st.sampled_from(["BUY", "SELL"]),
    quantity=_v2_decimals(),
    price=_v2_decimals(),
)
def test_venue__any_v2_order_gets_a_valid_v2_result_and_a_valid_v1_result(
    params: VenueParams, order_type: str, side: str, quantity: Decimal, price: Decimal
) -> None:
    """Whatever the venue's settings: the result is valid as v2.0 (the Pydantic path builds it)
    and as v1.0 (what it is written as by default), and fills no more than was ordered."""
    fill = PaperVenue(params).fill(VenueOrder("o1", "X", side, order_type, quantity, price))
    _as_v2_result(fill)
    _as_v1_result(fill)


@settings(max_examples=300, deadline=None)
@given(
    params=_ANY_PARAMS,
    order_type=st.sampled_from(["MARKET", "LIMIT"]),
    side=st.sampled_from(["BUY", "SELL"]),
    quantity=_extreme_floats(),
    price=_extreme_floats(),
)
def test_venue__any_v1_order_gets_a_valid_result_and_the_same_as_its_v2_conversion(
    params: VenueParams, order_type: str, side: str, quantity: float, price: float
) -> None:
    """A float order (the legacy path) gets a valid v1.0 result; when its floats fit v2.0, the
    Pydantic path's converted order gets the very same fill, a valid v2.0 result."""
    venue = PaperVenue(params)
    fill = venue.fill(VenueOrder("o1", "X", side, order_type, quantity, price))
    _as_v1_result(fill)
    if _fits_v2(quantity) and _fits_v2(price):
        converted = VenueOrder(
            "o1", "X", side, order_type, float_to_decimal(quantity), float_to_decimal(price)
        )
        assert venue.fill(converted) == fill
        _as_v2_result(fill)


# --- both paths, in process: the order's stream entry in, the result's stream entry read back ---

_PATHS = {"legacy": ("legacy", "v1.0"), "pydantic": ("pydantic", "v1.0"), "pydantic-v2": ("pydantic", "v2.0")}
"""Execution's codec path and the version it writes results in (legacy writes v1.0 only)."""


@functools.cache
def _store() -> SqliteStore:
    """Execution's store: never reached here (``handle`` and building a result do not touch it)."""
    return SqliteStore(":memory:")


@pytest.fixture(scope="module", autouse=True)
def _close_store() -> Iterator[None]:
    yield
    if _store.cache_info().currsize:
        asyncio.run(_store().close())


@functools.cache
def _execution(path: str, writes: str) -> ServiceContext:
    overrides = {"use_pydantic_contracts": path == "pydantic", "produce_version_order_results": writes}
    settings_ = ServiceSettings.load(ServiceName.EXECUTION, environ={}, overrides=overrides)
    return ServiceContext.create(ServiceName.EXECUTION, settings_, fakeredis.FakeAsyncRedis())


@functools.cache
def _risk() -> Any:
    """Risk's codec (its code is on v1.0): orders carry floats."""
    return codec_for(
        ServiceSettings.load(ServiceName.RISK, environ={}, overrides={"use_pydantic_contracts": True})
    )


@functools.cache
def _reader() -> VersionedCodec:
    """A consumer of results on v1.0 reading any version (lenient: a legacy result has no timestamp)."""
    return VersionedCodec(build_codec(CodecPath.PYDANTIC, Profile.LENIENT))


def _read(fields: Any) -> dict[str, Any]:
    message = _reader().from_fields(Topic.ORDER_RESULTS, fields, entry_id=ENTRY_ID).message
    return {k: v for k, v in message.model_dump(mode="json").items() if k != "timestamp"}


def _through_execution(
    name: str, order: dict[str, Any], params: VenueParams | None = None
) -> tuple[str, Any]:
    """``("result", values read back)``, or ``("refused", reason)`` when execution's codec refuses
    the order before the venue. What the consumer and :meth:`ExecutionService.finish_batch` do,
    without Redis: decode the entry, fill (``handle``), build the result from the fill, write it."""
    ctx = _execution(*_PATHS[name])
    svc = ExecutionService(ctx, _store(), params)
    entry = _risk().to_fields(Topic.ORDERS, _risk().build(Topic.ORDERS, order))
    try:
        decoded = ctx.codec.from_fields(Topic.ORDERS, entry, entry_id=ENTRY_ID)
    except ContractError as exc:
        return "refused", exc.reason
    fill = svc.venue.fill(decoded.message)  # ExecutionService.handle: the fill, nothing else
    result = svc._result(fill)  # the result as finish_batch builds it from the stored fill
    return "result", _read(ctx.codec.to_fields(Topic.ORDER_RESULTS, result))


def _assert_paths_agree(order: dict[str, Any], params: VenueParams | None = None) -> dict[str, Any]:
    """Every path gives the legacy path's valid result, or (Pydantic) refuses an order whose
    floats do not fit v2.0 by conversion, before the venue; returns the legacy result."""
    legacy = _through_execution("legacy", order, params)
    assert legacy[0] == "result", legacy
    for name in ("pydantic", "pydantic-v2"):
        outcome = _through_execution(name, order, params)
        if outcome[0] == "refused":
            assert outcome[1] == "version_conversion", (name, outcome)
            assert not (_fits_v2(order["quantity"]) and _fits_v2(order["price"])), (name, order)
        else:
            assert outcome == legacy, name
    return dict(legacy[1])


@pytest.mark.parametrize(
    ("order_type", "quantity", "price", "reason"),
    [
        ("LIMIT", 1.0, 1e12, LOT_TOO_DEAR),  # audit: PARTIALLY_FILLED 0.0 (legacy), dead letter (Pydantic)
        ("MARKET", 1.0, 1e100, PRICE_UNCARRIED),  # audit: decimal.InvalidOperation, retried, dead letter
        ("MARKET", 1.0, 1e62, PRICE_UNCARRIED),  # reaches the venue on both paths
        ("LIMIT", 1e-7, 1e10, LOT_TOO_DEAR),
        ("LIMIT", 1.0, 1e300, PRICE_UNCARRIED),
        ("LIMIT", 1e308, 1e308, PRICE_UNCARRIED),
        ("LIMIT", 5e-324, 1e308, PRICE_UNCARRIED),
        ("MARKET", 1.0, sys.float_info.max, PRICE_UNCARRIED),
        ("MARKET", 1e20, 1e-20, "fill price not above 0 at 8 decimals"),
        ("MARKET", 1.0, 5e-324, "fill price not above 0 at 8 decimals"),
    ],
)
def test_both_paths__extreme_order_gets_the_same_rejected_result(
    order_type: str, quantity: float, price: float, reason: str
) -> None:
    OrderV1(**_order(order_type, quantity, price))  # valid per the order contract
    result = _assert_paths_agree(_order(order_type, quantity, price))
    assert (result["status"], result["reason"]) == ("REJECTED", reason)


@pytest.mark.parametrize(
    ("quantity", "price", "status"),
    [(1e-9, 1e10, "FILLED"), (1e15, 1e-14, "FILLED"), (123456789.123, 1e-5, "PARTIALLY_FILLED")],
)
def test_both_paths__extreme_order_a_result_carries_gets_the_same_fill(
    quantity: float, price: float, status: str
) -> None:
    assert _assert_paths_agree(_order("LIMIT", quantity, price))["status"] == status


@settings(max_examples=200, deadline=None)
@given(
    params=st.sampled_from(
        [
            VenueParams(),  # what the services run with unless configured
            VenueParams(min_notional=0),
            VenueParams(min_notional=0, max_fill_notional=1e300, quantity_step=1e-12),
        ]
    ),
    order_type=st.sampled_from(["MARKET", "LIMIT"]),
    side=st.sampled_from(["BUY", "SELL"]),
    quantity=_extreme_floats(),
    price=_extreme_floats() | st.none(),
)
def test_both_paths__any_valid_order_gets_a_valid_result_and_the_same_on_every_path(
    params: VenueParams, order_type: str, side: str, quantity: float, price: float | None
) -> None:
    """Legacy, Pydantic writing v1.0 and Pydantic writing v2.0: one result, read back by a v1.0
    consumer, never an exception (the Pydantic path may refuse only what v2.0 cannot carry)."""
    assume(order_type == "MARKET" or price is not None)  # a LIMIT order without a price is invalid
    _assert_paths_agree(_order(order_type, quantity, price, side), params)


# --- both paths, on the real services ----------------------------------------------------------


@pytest.mark.integration
async def test_real_services__extreme_orders_are_rejected_once_on_both_paths_and_none_dead_lettered(
    redis_async: aioredis.Redis, keys: KeySpace, pg_database: str
) -> None:
    """The audit's orders through risk's stream, execution's consumer, PostgreSQL and Redis:
    one REJECTED result each, the same on both paths; nothing retried or dead-lettered for a
    handler failure (Pydantic refuses the 1e100 order by conversion, before the venue)."""
    orders = [
        {**_order("LIMIT", 1.0, 1e12), "order_id": "too-dear"},
        {**_order("MARKET", 1.0, 1e100), "order_id": "price-1e100"},
        {**_order("MARKET", 1.0, 1e62), "order_id": "price-1e62"},
        {**_order("MARKET", 0.01, 50_000.0), "order_id": "ordinary"},
    ]
    read: dict[str, dict[str, Any]] = {}
    for path in ("legacy", "pydantic"):
        space = KeySpace(prefix=f"{keys.prefix}{path}:")  # under keys': cleaned up with it
        flags = {"key_prefix": space.prefix, "use_pydantic_contracts": path == "pydantic"}
        ctx = ServiceContext.create(
            ServiceName.EXECUTION,
            ServiceSettings.load(ServiceName.EXECUTION, environ={}, overrides=flags),
            redis_async,
        )
        risk = ServiceContext.create(
            ServiceName.RISK, ServiceSettings.load(ServiceName.RISK, environ={}, overrides=flags), redis_async
        )
        store = PostgresStore(pg_database, schema=f"paper_{uuid.uuid4().hex[:8]}")
        svc = ExecutionService(ctx, store)
        await svc.start()
        try:
            await risk.publisher.publish_many(
                Topic.ORDERS, [risk.codec.build(Topic.ORDERS, o) for o in orders]
            )
            consumer = StreamConsumer(
                redis_async,
                topic=Topic.ORDERS,
                service=ServiceName.EXECUTION,
                codec=ctx.codec,
                keys=space,
                instance="x1",
                block_ms=0,
                metrics=ctx.metrics,
                dead_letters=ctx.dead_letters,
                outputs=ctx.publisher,
                finish_batch=svc.finish_batch,
                before_ack=svc.before_ack,
            )
            await consumer.ensure_group()
            assert await consumer.poll_once(svc.handle) == len(orders)
            rows = await store.rows()
        finally:
            await store.drop_schema()
            await store.close()
        entries: Any = await redis_async.xrange(space.stream(Topic.ORDER_RESULTS))
        results = {
            json.loads(fields[b"order_id"]): _read({k.decode(): v.decode() for k, v in fields.items()})
            for _, fields in entries
        }
        letters = await ctx.dead_letters.read(Topic.ORDERS)
        pending: Any = await redis_async.xpending(
            space.stream(Topic.ORDERS), space.group(ServiceName.EXECUTION)
        )
        assert pending["pending"] == 0, path  # nothing left to retry
        assert all(letter.reason == "version_conversion" for letter in letters), (path, letters)
        assert len(results) + len(letters) == len(orders) == len(entries) + len(letters), path
        assert sorted(r["order_id"] for r in rows) == sorted(results), path  # one row per result
        read.update({f"{path}/{oid}": r for oid, r in results.items()})
    for oid in ("too-dear", "price-1e62", "ordinary"):
        assert read[f"legacy/{oid}"] == read[f"pydantic/{oid}"], oid
    assert (read["legacy/too-dear"]["status"], read["legacy/too-dear"]["reason"]) == (
        "REJECTED",
        LOT_TOO_DEAR,
    )
    assert read["legacy/price-1e62"]["reason"] == PRICE_UNCARRIED
    assert read["legacy/price-1e100"]["reason"] == PRICE_UNCARRIED
    assert read["legacy/ordinary"]["status"] == "FILLED"
    assert read.get("pydantic/price-1e100", read["legacy/price-1e100"]) == read["legacy/price-1e100"]
