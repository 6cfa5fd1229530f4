"""The execution store: migration at start, idempotent on order id, on PostgreSQL and SQLite."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from services.execution.store import PostgresStore, ResultStore, SqliteStore

RESULT = {
    "order_id": "ord-1",
    "symbol": "BTC/USDT",
    "side": "BUY",
    "status": "FILLED",
    "filled_quantity": 0.0123,
    "average_price": 87_250.123456789,
    "fee": 0.0001,
    "reason": None,
    "simulated": True,
}


@pytest.fixture(params=["postgres", "sqlite"])
async def store(
    request: pytest.FixtureRequest, pg_database: str, tmp_path: Path
) -> AsyncIterator[ResultStore]:
    if request.param == "postgres":
        pg = PostgresStore(pg_database, schema=f"t_{uuid.uuid4().hex[:8]}")
        await pg.migrate()
        yield pg
        await pg.drop_schema()
        await pg.close()
    else:
        lite = SqliteStore(tmp_path / "results.sqlite3")
        await lite.migrate()
        yield lite
        await lite.close()


@pytest.mark.integration
async def test_store__insert_is_idempotent_on_order_id(store: ResultStore) -> None:
    assert await store.insert(RESULT, "pydantic") is True
    assert await store.insert({**RESULT, "fee": 99.0}, "legacy") is False
    rows = await store.rows()
    assert rows == [RESULT]


@pytest.mark.integration
async def test_store__values_round_trip_exactly(store: ResultStore) -> None:
    await store.insert(RESULT, "legacy")
    stored = await store.get("ord-1")
    assert stored is not None
    assert stored.values == RESULT
    assert stored.published is False


@pytest.mark.integration
async def test_store__mark_published_is_remembered(store: ResultStore) -> None:
    await store.insert(RESULT, "legacy")
    await store.mark_published("ord-1", "1-0")
    stored = await store.get("ord-1")
    assert stored is not None
    assert stored.published is True
    assert await store.get("ord-unknown") is None


@pytest.mark.integration
async def test_store__migration_runs_twice_without_harm(store: ResultStore) -> None:
    await store.insert(RESULT, "legacy")
    await store.migrate()
    assert len(await store.rows()) == 1
