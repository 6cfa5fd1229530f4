"""The execution store: migration at start, idempotent on order id, exact decimals, on
PostgreSQL and SQLite (including the upgrade of a table the float-column migration created)."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest

from core.versions.changes import float_to_decimal
from services.execution import store as store_module
from services.execution.store import PostgresStore, ResultStore, SqliteStore

RESULT = {
    "order_id": "ord-1",
    "symbol": "BTC/USDT",
    "side": "BUY",
    "status": "FILLED",
    "filled_quantity": Decimal("0.0123"),
    "average_price": Decimal("87250.123456789"),
    "fee": Decimal("0.0001"),
    "reason": None,
    "simulated": True,
}

# Floats as the v1 (DOUBLE PRECISION) table held them, including ones that need 16-17 digits
# (PostgreSQL's own float8 -> numeric cast would cut them to 15) and one its text writes as 1e-05.
OLD_FLOATS = [
    ("ord-a", 0.0123, 87_250.123456789, 0.0001),
    ("ord-b", 0.30000000000000004, 0.1 + 0.7, 1e-05),
    ("ord-c", 0.0, None, 0.0),
]


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
    assert await store.insert({**RESULT, "fee": Decimal("99")}, "legacy") is False
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


@pytest.mark.integration
async def test_store__decimals_beyond_float_precision_come_back_exactly(store: ResultStore) -> None:
    exact = {
        **RESULT,
        "filled_quantity": Decimal("0.123456789012345678901234567"),
        "average_price": Decimal("64250.10000001"),
        "fee": Decimal("1.50"),  # the scale is kept too
    }
    await store.insert(exact, "pydantic")
    stored = await store.get("ord-1")
    assert stored is not None
    assert stored.values == exact
    assert [str(stored.values[c]) for c in ("filled_quantity", "fee")] == [
        "0.123456789012345678901234567",
        "1.50",
    ]


@pytest.mark.integration
async def test_store__a_float_is_stored_as_its_shortest_decimal(store: ResultStore) -> None:
    # What the v1 -> v2 converter does: 0.1 is 0.1, not the binary expansion of the double.
    await store.insert({**RESULT, "filled_quantity": 0.1, "average_price": 0.1 + 0.2, "fee": 0.0}, "legacy")
    (row,) = await store.rows()
    assert (row["filled_quantity"], row["average_price"], row["fee"]) == (
        Decimal("0.1"),
        Decimal("0.30000000000000004"),
        Decimal("0.0"),
    )


def _old_row(order_id: str, filled: float, price: float | None, fee: float) -> tuple[Any, ...]:
    status = "FILLED" if price is not None else "REJECTED"
    return (order_id, "BTC/USDT", "BUY", status, filled, price, fee, None, True, "legacy", "1-0")


_INSERT_OLD = (
    "INSERT INTO order_results (order_id, symbol, side, status, filled_quantity, average_price, fee, "
    "reason, simulated, path, published_stream_id) VALUES ({marks})"
)


def _expected_upgrade() -> list[dict[str, Any]]:
    return [
        {
            "order_id": order_id,
            "filled_quantity": float_to_decimal(filled),
            "average_price": None if price is None else float_to_decimal(price),
            "fee": float_to_decimal(fee),
        }
        for order_id, filled, price, fee in OLD_FLOATS
    ]


def _money(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: r[k] for k in ("order_id", "filled_quantity", "average_price", "fee")} for r in rows]


@pytest.mark.integration
async def test_store__postgres_upgrade_turns_float_columns_into_exact_numeric(
    pg_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    schema = f"t_{uuid.uuid4().hex[:8]}"
    old = PostgresStore(pg_database, schema=schema)
    with monkeypatch.context() as patch:  # the store as shipped before migration 2
        patch.setattr(store_module, "_MIGRATIONS", store_module._MIGRATIONS[:1])
        await old.migrate()
    await old.close()
    with psycopg.connect(pg_database, autocommit=True) as conn:
        conn.execute(f'SET search_path TO "{schema}"')
        for row in OLD_FLOATS:
            conn.execute(_INSERT_OLD.format(marks=", ".join(["%s"] * 11)), _old_row(*row))
    new = PostgresStore(pg_database, schema=schema)
    try:
        await new.migrate()
        assert _money(await new.rows()) == _expected_upgrade()
        stored = await new.get("ord-a")
        assert stored is not None
        assert stored.published
        with psycopg.connect(pg_database) as conn:
            types = conn.execute(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_schema = %s AND table_name = 'order_results' AND column_name = ANY(%s)",
                (schema, list(store_module.DECIMAL_COLUMNS)),
            ).fetchall()
            versions = conn.execute(f'SELECT version FROM "{schema}".schema_migrations ORDER BY 1').fetchall()
        assert sorted(types) == [(c, "numeric") for c in sorted(store_module.DECIMAL_COLUMNS)]
        assert [v for (v,) in versions] == [1, 2]
        await new.migrate()  # a second start changes nothing
        assert _money(await new.rows()) == _expected_upgrade()
    finally:
        await new.drop_schema()
        await new.close()


@pytest.mark.integration
async def test_store__sqlite_upgrade_keeps_every_float_as_its_exact_decimal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "results.sqlite3"
    old = SqliteStore(path)
    with monkeypatch.context() as patch:
        patch.setattr(store_module, "_SQLITE_MIGRATIONS", store_module._SQLITE_MIGRATIONS[:1])
        await old.migrate()
    await old.close()
    with sqlite3.connect(path) as db:
        for row in OLD_FLOATS:
            db.execute(_INSERT_OLD.format(marks=", ".join(["?"] * 11)), _old_row(*row))
    new = SqliteStore(path)
    try:
        await new.migrate()
        assert _money(await new.rows()) == _expected_upgrade()
        stored = await new.get("ord-b")
        assert stored is not None
        assert stored.published
        await new.migrate()
        assert _money(await new.rows()) == _expected_upgrade()
    finally:
        await new.close()
