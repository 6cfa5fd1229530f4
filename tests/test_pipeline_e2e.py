"""The pipeline end to end on real Redis and PostgreSQL: same trades on every path, nothing doubled."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from core.codec import build_codec
from core.domain.contracts import Side
from core.settings import ServiceSettings
from core.topics import CodecPath, KeySpace, Profile, ServiceName, Topic
from services.execution.service import ExecutionService
from services.execution.store import PostgresStore
from services.pipeline import PipelineResult, run_pipeline
from services.runtime import ServiceContext
from services.ws.mexc_v3_client import Backoff, MexcV3Client
from services.ws.replay import BUNDLED_TRADES_SMALL, load_trades
from services.ws.service import WsService
from services.ws.trades import Trade
from tests.ops_helpers import service_settings
from tests.support.execution import execute_batch
from tests.support.fake_mexc import FakeMexc, eventually

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[1]


def _settings(keys: KeySpace, redis_url: str, pydantic: bool) -> dict[ServiceName, ServiceSettings]:
    return {
        s: service_settings(s, keys, f"e2e-{s.value}", redis_url=redis_url, use_pydantic_contracts=pydantic)
        for s in ServiceName
    }


async def _run(redis_url: str, pg_url: str, keys: KeySpace, pydantic: bool) -> PipelineResult:
    client = aioredis.Redis.from_url(redis_url)
    store = PostgresStore(pg_url, schema=f"e2e_{uuid.uuid4().hex[:8]}")
    try:
        return await run_pipeline(
            client, _settings(keys, redis_url, pydantic), load_trades(BUNDLED_TRADES_SMALL), store, environ={}
        )
    finally:
        await store.drop_schema()
        await store.close()
        await client.aclose()


async def test_pipeline__legacy_and_pydantic_give_identical_order_results_and_rows(
    redis_url: str, pg_database: str
) -> None:
    legacy_keys = KeySpace(f"cdbtest:{uuid.uuid4().hex[:10]}:")
    pydantic_keys = KeySpace(f"cdbtest:{uuid.uuid4().hex[:10]}:")
    try:
        legacy = await _run(redis_url, pg_database, legacy_keys, pydantic=False)
        pydantic = await _run(redis_url, pg_database, pydantic_keys, pydantic=True)
    finally:
        client = aioredis.Redis.from_url(redis_url)
        for space in (legacy_keys, pydantic_keys):
            found = [k async for k in client.scan_iter(match=space.all_keys_pattern())]
            if found:
                await client.unlink(*found)
        await client.aclose()
    assert legacy.quiescent
    assert pydantic.quiescent
    assert len(legacy.order_results) > 5, "the bundled data must produce trades to compare"
    statuses = {r["status"] for r in legacy.order_results}
    assert "FILLED" in statuses
    assert legacy.order_results == pydantic.order_results
    assert legacy.stored_rows == pydantic.stored_rows
    assert sorted(r["order_id"] for r in legacy.order_results) == [r["order_id"] for r in legacy.stored_rows]
    assert legacy.stream_lengths == pydantic.stream_lengths
    assert sum(legacy.dead_letters.values()) == sum(pydantic.dead_letters.values()) == 0
    assert {r.path for r in pydantic.services.values()} == {"pydantic"}
    assert {r.path for r in legacy.services.values()} == {"legacy"}


async def test_pipeline__a_consumer_that_dies_at_start_ends_the_run_at_once_with_its_error(
    redis_url: str, pg_database: str, keys: KeySpace
) -> None:
    # Execution's store fails its migration: its consumer ends at start and nothing drains.
    # The run used to wait out its whole drain timeout (120 s by default) before saying anything.
    class BrokenStore(PostgresStore):
        async def migrate(self) -> None:
            raise RuntimeError("migration 3 failed")

    client = aioredis.Redis.from_url(redis_url)
    store = BrokenStore(pg_database, schema=f"e2e_{uuid.uuid4().hex[:8]}")
    started = asyncio.get_running_loop().time()
    try:
        with pytest.raises(RuntimeError, match="migration 3 failed"):
            await run_pipeline(
                client,
                _settings(keys, redis_url, True),
                load_trades(BUNDLED_TRADES_SMALL),
                store,
                environ={},
                timeout_s=60,
            )
    finally:
        await store.close()
        await client.aclose()
    assert asyncio.get_running_loop().time() - started < 30


async def test_execution__redelivered_order_creates_no_second_fill_or_row(
    redis_async: aioredis.Redis, keys: KeySpace, pg_database: str
) -> None:
    settings = ServiceSettings.load(
        ServiceName.EXECUTION,
        environ={},
        overrides={"key_prefix": keys.prefix, "use_pydantic_contracts": True},
    )
    ctx = ServiceContext.create(ServiceName.EXECUTION, settings, redis_async)
    store = PostgresStore(pg_database, schema=f"redeliver_{uuid.uuid4().hex[:8]}")
    svc = ExecutionService(ctx, store)
    await svc.start()
    order = build_codec(CodecPath.PYDANTIC).build(
        Topic.ORDERS,
        {
            "order_id": "ord-1",
            "signal_id": "sig-1",
            "symbol": "BTC/USDT",
            "side": "BUY",
            "order_type": "MARKET",
            "quantity": 0.01,
            "price": 50_000.0,
        },
    )
    decoded = ctx.codec.from_fields(Topic.ORDERS, ctx.codec.to_fields(Topic.ORDERS, order))
    try:
        # Three batches, each before the previous one's marks were written (as in one busy batch).
        assert await execute_batch(svc, [(decoded, "1-0")], mark=False) == {}
        assert await execute_batch(svc, [(decoded, "1-0")], mark=False) == {}  # the same entry again
        assert await execute_batch(svc, [(decoded, "2-0")], mark=False) == {}  # the order published twice
        rows = await store.rows()
        results = await redis_async.xlen(keys.stream(Topic.ORDER_RESULTS))
    finally:
        await store.drop_schema()
        await store.close()
    assert len(rows) == 1
    assert rows[0]["order_id"] == "ord-1"
    assert results == 1
    assert ctx.extra_counts == {"fills": 1, "duplicate_orders": 2}
    assert ctx.metrics.snapshot()["ignored_by_reason"]["duplicate"] == 2


async def test_execution__crash_between_store_and_publish_is_repaired_on_redelivery(
    redis_async: aioredis.Redis, keys: KeySpace, pg_database: str
) -> None:
    settings = ServiceSettings.load(ServiceName.EXECUTION, environ={}, overrides={"key_prefix": keys.prefix})
    ctx = ServiceContext.create(ServiceName.EXECUTION, settings, redis_async)
    store = PostgresStore(pg_database, schema=f"repair_{uuid.uuid4().hex[:8]}")
    svc = ExecutionService(ctx, store)
    await svc.start()
    values = {
        "order_id": "ord-9",
        "signal_id": "sig-9",
        "symbol": "ETH/USDT",
        "side": "SELL",
        "order_type": "MARKET",
        "quantity": 0.5,
        "price": 3_000.0,
    }
    order = ctx.codec.build(Topic.ORDERS, values)
    await store.insert(svc.venue.fill(order), "legacy")  # stored, then the process died
    try:
        decoded = ctx.codec.from_fields(Topic.ORDERS, ctx.codec.to_fields(Topic.ORDERS, order))
        assert await execute_batch(svc, [(decoded, "1-0")], mark=False) == {}
        unmarked = await store.get("ord-9")
        await svc.before_ack()  # what the consumer does before acknowledging the batch
        published = await redis_async.xlen(keys.stream(Topic.ORDER_RESULTS))
        stored = await store.get("ord-9")
    finally:
        await store.drop_schema()
        await store.close()
    assert published == 1
    assert unmarked is not None
    assert not unmarked.published  # marks are written per batch, before its acknowledgement
    assert stored is not None
    assert stored.published


async def test_ws__live_mexc_trades_arrive_as_market_data_and_bad_frames_are_dead_lettered(
    redis_async: aioredis.Redis, keys: KeySpace
) -> None:
    settings = ServiceSettings.load(
        ServiceName.WS, environ={}, overrides={"key_prefix": keys.prefix, "use_pydantic_contracts": True}
    )
    ctx = ServiceContext.create(ServiceName.WS, settings, redis_async)
    ws = WsService(ctx, batch_size=1)
    t0 = 1_767_225_600_000
    sides = [Side.BUY, Side.SELL, Side.BUY]
    first = [Trade("BTC/USDT", 50_000.0 + i, 0.1, side, t0 + i) for i, side in enumerate(sides)]
    later = [Trade("BTC/USDT", 50_100.0, 0.2, Side.SELL, t0 + 100)]
    stream = keys.stream(Topic.MARKET_DATA)
    async with FakeMexc() as server:
        client = MexcV3Client(
            server.url,
            ["BTC/USDT"],
            ws.on_trade,
            on_bad_frame=ws.on_bad_frame,
            backoff=Backoff(initial=0.01, maximum=0.05),
            open_timeout=2.0,
        )
        stop = asyncio.Event()
        task = asyncio.create_task(client.run(stop))
        await eventually(lambda: server.live_subscribers("BTCUSDT") == 1, what="subscription")
        await server.push_trades("BTCUSDT", first)
        await server.push_raw(b"\x08\x96\x01 definitely not a deals frame \xff")
        await eventually(lambda: client.stats.bad_frames == 1, what="bad frame seen")
        server.drop()
        await eventually(
            lambda: client.stats.reconnects >= 1 and server.live_subscribers("BTCUSDT") == 1,
            what="resubscribed after the drop",
        )
        await server.push_trades("BTCUSDT", later)
        await eventually(lambda: client.stats.trades == 4, what="trade after reconnect")
        stop.set()
        await asyncio.wait_for(task, timeout=5)
    entries = await redis_async.xrange(stream)
    reader = build_codec(CodecPath.PYDANTIC, Profile.STRICT)
    decoded = [reader.from_fields(Topic.MARKET_DATA, f).message for _, f in entries]
    assert [(m.price, m.side.value, m.timestamp) for m in decoded] == [
        (t.price, t.side, t.timestamp) for t in [*first, *later]
    ]
    letters = await ctx.dead_letters.read(Topic.MARKET_DATA)
    assert len(letters) == 1
    assert ctx.extra_counts["bad_frames"] == 1


def test_cdb_run__without_redis_url_completes_on_bundled_data_and_prints_summary(tmp_path: Path) -> None:
    env = {"PATH": str(Path(sys.executable).parent), "HOME": str(tmp_path)}
    done = subprocess.run(
        [str(Path(sys.executable).parent / "cdb"), "run", "--data", str(BUNDLED_TRADES_SMALL), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=tmp_path,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(done.stdout)
    assert summary["quiescent"] is True
    assert summary["trades"] == 400
    assert summary["streams"]["market_data"] == 400
    assert summary["order_results"] == summary["stored_rows"] > 0
    assert summary["services"]["signal"]["path"] == "legacy"
    table = subprocess.run(
        [
            str(Path(sys.executable).parent / "cdb"),
            "run",
            "--data",
            str(BUNDLED_TRADES_SMALL),
            "--all-pydantic",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=tmp_path,
        check=False,
    )
    assert table.returncode == 0, table.stderr[-2000:]
    for heading in ("Messages per topic", "Services", "order_results", "execution", "pydantic"):
        assert heading in table.stdout
    # Every service's row says what it handled and produced; ws produced the 400 market_data.
    cells = [
        [c for c in line.split() if c != "│"] for line in table.stdout.splitlines() if line.startswith("│")
    ]
    rows = {row[0]: row for row in cells}  # service, path, profile, handled, produced, ...
    assert rows["ws"][3:5] == ["400", "400"], rows["ws"]
    assert rows["execution"][3] == str(summary["order_results"]), rows["execution"]
