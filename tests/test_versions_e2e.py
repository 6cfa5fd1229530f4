"""Contract versions end to end on real Redis and PostgreSQL: services on different versions at
once trade like the all-v1.0 baseline, and execution (its code on v2.0) keeps decimals exact
from the order it reads to the row it stores and the result it writes."""

from __future__ import annotations

import asyncio
import csv
import json
import uuid
from decimal import Decimal
from typing import Any

import pytest
import redis.asyncio as aioredis

from core.settings import ServiceSettings
from core.topics import KeySpace, ServiceName, Topic
from core.versions.models import OrderV2
from services.execution.service import ExecutionService
from services.execution.store import COLUMNS, DECIMAL_COLUMNS, PostgresStore
from services.pipeline import PipelineResult, read_stream, run_pipeline
from services.runtime import ServiceContext, run_consuming_service
from services.ws.replay import BUNDLED_TRADES_SMALL, load_trades
from tests.ops_helpers import service_settings
from tests.transport_helpers import poll_until

pytestmark = pytest.mark.integration

WS, SIGNAL, RISK, EXECUTION = ServiceName
MIXED = {WS: "v2.0", SIGNAL: "v1.0", RISK: "v1.1", EXECUTION: "v1.0"}
"""ws writes exact decimals, risk writes v1.1 orders, execution (code on v2.0) writes v1.0 results."""
MIXED_OTHER_WAY = {WS: "v1.0", SIGNAL: "v2.0", RISK: "v2.0", EXECUTION: "v2.0"}


def _settings(keys: KeySpace, redis_url: str, pydantic: bool, writes: dict[ServiceName, str]) -> Any:
    return {
        s: service_settings(
            s,
            keys,
            f"v-{s.value}",
            redis_url=redis_url,
            use_pydantic_contracts=pydantic,
            **{f"produce_version_{s.produces.value}": writes.get(s, "v1.0")},
        )
        for s in ServiceName
    }


async def _run(
    client: aioredis.Redis,
    *,
    redis_url: str,
    pg_url: str,
    keys: KeySpace,
    pydantic: bool,
    writes: dict[ServiceName, str],
) -> tuple[PipelineResult, dict[Topic, list[Any]]]:
    store = PostgresStore(pg_url, schema=f"ver_{uuid.uuid4().hex[:8]}")
    try:
        result = await run_pipeline(
            client,
            _settings(keys, redis_url, pydantic, writes),
            load_trades(BUNDLED_TRADES_SMALL),
            store,
            environ={},
        )
        streams = {t: [fields for _, fields in await read_stream(client, keys, t)] for t in Topic}
        return result, streams
    finally:
        await store.drop_schema()
        await store.close()


async def _cleanup(client: aioredis.Redis, spaces: list[KeySpace]) -> None:
    for space in spaces:
        found = [k async for k in client.scan_iter(match=space.all_keys_pattern(), count=1000)]
        if found:
            await client.unlink(*found)


def _versions(entries: list[Any]) -> set[str]:
    return {json.loads(fields[b"api_version"]) for fields in entries}


@pytest.mark.parametrize(
    "writes", [MIXED, MIXED_OTHER_WAY], ids=["ws2-risk1.1-exec1.0", "signal2-risk2-exec2"]
)
async def test_versions_e2e__services_on_different_versions_trade_like_the_all_v1_0_baseline(
    redis_url: str, pg_database: str, writes: dict[ServiceName, str]
) -> None:
    client = aioredis.Redis.from_url(redis_url)
    spaces = [KeySpace(f"cdbtest:{uuid.uuid4().hex[:10]}:") for _ in range(2)]
    try:
        baseline, _ = await _run(
            client, redis_url=redis_url, pg_url=pg_database, keys=spaces[0], pydantic=False, writes={}
        )
        mixed, streams = await _run(
            client, redis_url=redis_url, pg_url=pg_database, keys=spaces[1], pydantic=True, writes=writes
        )
    finally:
        await _cleanup(client, spaces)
        await client.aclose()
    assert baseline.quiescent
    assert mixed.quiescent
    # Each producer really wrote its version.
    for service, version in writes.items():
        assert _versions(streams[service.produces]) == {version}, service.value
    # The same trades, by content (results read back as v1.0 by one tolerant reader).
    assert len(baseline.order_results) > 5
    assert mixed.order_results == baseline.order_results
    assert mixed.stored_rows == baseline.stored_rows
    assert mixed.stream_lengths == baseline.stream_lengths
    assert sum(mixed.dead_letters.values()) == sum(baseline.dead_letters.values()) == 0
    # The stored rows are exact decimals: the shortest decimal of each result's value, never a
    # binary expansion (0.1 is 0.1, not 0.1000000000000000055511151231257827).
    by_id = {r["order_id"]: r for r in mixed.order_results}
    # ... and the order's size, as the order carried it (a v2.0 string, else a float's shortest).
    sizes = {json.loads(f[b"order_id"]): json.loads(f[b"quantity"]) for f in streams[Topic.ORDERS]}
    for row in mixed.stored_rows:
        for column in (c for c in DECIMAL_COLUMNS if c in COLUMNS):  # what the v1.0 results carry
            value, published = row[column], by_id[row["order_id"]][column]
            if published is None:
                assert value is None
                continue
            assert isinstance(value, Decimal), column
            assert value == Decimal(repr(published)), (row["order_id"], column)
        size = sizes[row["order_id"]]
        assert row["ordered_quantity"] == Decimal(size if isinstance(size, str) else repr(size))
        assert row["filled_quantity"] <= row["ordered_quantity"]


async def test_versions_e2e__ws_v2_carries_the_csv_decimals_exact(redis_url: str, pg_database: str) -> None:
    client = aioredis.Redis.from_url(redis_url)
    space = KeySpace(f"cdbtest:{uuid.uuid4().hex[:10]}:")
    try:
        _, streams = await _run(
            client, redis_url=redis_url, pg_url=pg_database, keys=space, pydantic=True, writes={WS: "v2.0"}
        )
    finally:
        await _cleanup(client, [space])
        await client.aclose()
    with BUNDLED_TRADES_SMALL.open(encoding="utf-8") as f:
        rows = list(csv.DictReader(line for line in f if not line.startswith("#")))
    wire = [(json.loads(x[b"price"]), json.loads(x[b"quantity"])) for x in streams[Topic.MARKET_DATA]]
    assert [(Decimal(p), Decimal(q)) for p, q in wire] == [
        (Decimal(r["price"]), Decimal(r["volume"])) for r in rows
    ]
    assert all(isinstance(p, str) and isinstance(q, str) for p, q in wire)  # JSON strings, not numbers


EXACT_ORDER = OrderV2(
    order_id="ord-exact-1",
    signal_id="sig-exact-1",
    symbol="BTC/USDT",
    side="BUY",
    order_type="LIMIT",
    quantity=Decimal("0.012345678901234567"),  # 17 significant digits after the zeros: no float
    price=Decimal("64250.10000001"),
    timestamp=1_767_225_600_000,
)


@pytest.mark.parametrize("results_version", ["v2.0", "v1.0"])
async def test_versions_e2e__execution_keeps_a_v2_order_exact_to_the_row_and_the_result(
    redis_async: aioredis.Redis, keys: KeySpace, pg_database: str, results_version: str
) -> None:
    def settings(service: ServiceName, **flags: Any) -> ServiceSettings:
        return service_settings(service, keys, f"x-{service.value}", use_pydantic_contracts=True, **flags)

    risk = ServiceContext.create(RISK, settings(RISK, produce_version_orders="v2.0"), redis_async)
    await risk.publisher.publish_many(Topic.ORDERS, [EXACT_ORDER])
    ctx = ServiceContext.create(
        EXECUTION, settings(EXECUTION, produce_version_order_results=results_version), redis_async
    )
    schema = f"exact_{uuid.uuid4().hex[:8]}"
    store, checker = PostgresStore(pg_database, schema=schema), PostgresStore(pg_database, schema=schema)
    await store.migrate()
    stop = asyncio.Event()
    running = asyncio.create_task(
        run_consuming_service(ExecutionService(ctx, store), ctx, stop, status_interval_s=0.5)
    )
    stored: list[Any] = []

    async def poll() -> None:
        got = await checker.get(EXACT_ORDER.order_id)
        if got is not None and got.published:
            stored.append(got)
        else:
            await asyncio.sleep(0.05)

    try:
        await poll_until(poll, lambda: bool(stored), timeout_s=30)
    finally:
        stop.set()
        await asyncio.wait_for(running, timeout=10)
    try:
        row = stored[0].values
        fee = (EXACT_ORDER.quantity * EXACT_ORDER.price * Decimal("0.001")).quantize(Decimal("1E-8"))
        assert (row["status"], row["filled_quantity"], row["average_price"], row["fee"]) == (
            "FILLED",
            Decimal("0.012345678901234567"),
            Decimal("64250.10000001"),
            fee,
        )
        assert row["ordered_quantity"] == Decimal("0.012345678901234567")  # the order's size, exact
        ((_, fields),) = await redis_async.xrange(keys.stream(Topic.ORDER_RESULTS))
        assert json.loads(fields[b"api_version"]) == results_version
        filled = json.loads(fields[b"filled_quantity"])
        if results_version == "v2.0":
            assert filled == "0.012345678901234567"  # the exact decimal, as a JSON string
            assert json.loads(fields[b"ordered_quantity"]) == "0.012345678901234567"
        else:
            assert filled == float(Decimal("0.012345678901234567"))  # the nearest float, converted down
            assert b"ordered_quantity" not in fields  # v1.0 has no such field: dropped going down
    finally:
        await checker.drop_schema()
        await checker.close()
        await store.close()
