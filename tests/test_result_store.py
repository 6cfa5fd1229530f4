"""The execution store: migration at start, idempotent on order id, exact decimals, on
PostgreSQL and SQLite (including the upgrade of a table the float-column migration created, and
of one without ``ordered_quantity``)."""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest

from core.versions.changes import float_to_decimal
from services.execution import store as store_module
from services.execution.store import (
    STORED_COLUMNS,
    PostgresStore,
    ResultStore,
    RowRefusedError,
    SqliteStore,
    StoredResult,
)
from tests.transport_helpers import poll_until

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
    "ordered_quantity": Decimal("0.0123"),
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
async def waits_on_a_lock(watcher: Any, query_start: str) -> None:
    """Return once a statement starting with ``query_start`` waits on a row lock in this database."""
    waiting: list[bool] = []

    async def poll() -> None:
        cur = await watcher.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND datname = current_database() AND query LIKE %s",
            (query_start + "%",),
        )
        row = await cur.fetchone()
        if row and row[0]:
            waiting.append(True)
        else:
            await asyncio.sleep(0.01)

    await poll_until(poll, lambda: bool(waiting), timeout_s=30)


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


@pytest.mark.integration
async def test_store__insert_or_get_stores_the_first_and_returns_it_on_every_call(store: ResultStore) -> None:
    first = await store.insert_or_get(RESULT, "pydantic")
    again = await store.insert_or_get({**RESULT, "fee": Decimal("99"), "ordered_quantity": None}, "legacy")
    assert first.values == again.values == RESULT  # the first fill, not the second call's values
    assert (first.published, again.published) == (False, False)
    await store.mark_published("ord-1", "1-0")
    marked = await store.insert_or_get(RESULT, "pydantic")
    assert marked.published
    assert marked.values == RESULT
    assert await store.rows() == [RESULT]


@pytest.mark.integration
async def test_store__mark_published_many_marks_every_order_given_and_only_those(store: ResultStore) -> None:
    for order_id in ("ord-1", "ord-2", "ord-3"):
        await store.insert({**RESULT, "order_id": order_id}, "pydantic")
    await store.mark_published_many([("ord-1", "1-0"), ("ord-3", "3-0"), ("ord-unknown", "9-0")])
    await store.mark_published_many([])  # an empty batch is no call
    states = [await store.get(order_id) for order_id in ("ord-1", "ord-2", "ord-3")]
    assert [s.published if s is not None else None for s in states] == [True, False, True]
    assert len(await store.rows()) == 3  # an unknown order id adds no row


@pytest.mark.integration
async def test_store__a_result_without_ordered_quantity_stores_null(store: ResultStore) -> None:
    old_shape = {k: v for k, v in RESULT.items() if k != "ordered_quantity"}
    stored = await store.insert_or_get(old_shape, "legacy")
    assert stored.values == {**old_shape, "ordered_quantity": None}


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
        assert [v for (v,) in versions] == [1, 2, 3]
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


@pytest.mark.integration
@pytest.mark.parametrize("engine", ["postgres", "sqlite"])
async def test_store__migration_3_adds_ordered_quantity_null_in_the_rows_before_it(
    engine: str, pg_database: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    schema, path = f"t_{uuid.uuid4().hex[:8]}", tmp_path / "results.sqlite3"

    def open_store() -> PostgresStore | SqliteStore:
        return PostgresStore(pg_database, schema=schema) if engine == "postgres" else SqliteStore(path)

    old = open_store()
    with monkeypatch.context() as patch:  # the store as shipped with migrations 1 and 2
        patch.setattr(store_module, "_MIGRATIONS", store_module._MIGRATIONS[:2])
        patch.setattr(store_module, "_SQLITE_MIGRATIONS", store_module._SQLITE_MIGRATIONS[:2])
        await old.migrate()
        old_shape = {k: v for k, v in RESULT.items() if k != "ordered_quantity"}
        # What that version wrote: the v1.0 columns only, marked published.
        row = [*store_module._exact_row(old_shape, store_module.COLUMNS), "pydantic", "1-0"]
        cols = ", ".join((*store_module.COLUMNS, "path", "published_stream_id"))
        if isinstance(old, PostgresStore):
            conn = await old._connection()
            await conn.execute(
                f"INSERT INTO order_results ({cols}) VALUES ({', '.join(['%s'] * len(row))})", row
            )
        else:
            text = [*store_module._text_row(old_shape, store_module.COLUMNS), "pydantic", "1-0"]
            old._db.execute(
                f"INSERT INTO order_results ({cols}) VALUES ({', '.join(['?'] * len(text))})", text
            )
    await old.close()
    new = open_store()
    try:
        await new.migrate()
        await new.migrate()  # a second start changes nothing
        stored = await new.insert_or_get(RESULT, "pydantic")
        fresh = await new.insert_or_get({**RESULT, "order_id": "ord-2"}, "pydantic")
        rows = await new.rows()
    finally:
        if isinstance(new, PostgresStore):
            await new.drop_schema()
        await new.close()
    assert stored.published  # the old row, as it was
    assert stored.values == {**old_shape, "ordered_quantity": None}  # unknown, not invented
    assert fresh.values == {**RESULT, "order_id": "ord-2"}
    assert [r["ordered_quantity"] for r in rows] == [None, RESULT["ordered_quantity"]]


@pytest.mark.integration
async def test_store__insert_or_get_many_stores_new_rows_keeps_old_ones_and_returns_every_first_row(
    store: ResultStore,
) -> None:
    await store.insert({**RESULT, "order_id": "ord-old", "fee": Decimal("0.5")}, "legacy")
    await store.mark_published("ord-old", "1-0")
    rows = [
        {**RESULT, "order_id": "ord-new"},
        {**RESULT, "order_id": "ord-old"},  # stored before: that row wins
        {**RESULT, "order_id": "ord-new", "fee": Decimal("99")},  # twice in one batch: the first wins
        {**RESULT, "order_id": "ord-null", "average_price": None, "ordered_quantity": None},
    ]

    stored = await store.insert_or_get_many(rows, "pydantic")

    assert sorted(stored) == ["ord-new", "ord-null", "ord-old"]
    assert stored["ord-new"].values == rows[0]
    assert stored["ord-old"].values == {**RESULT, "order_id": "ord-old", "fee": Decimal("0.5")}
    assert stored["ord-null"].values == rows[3]
    assert [stored[o].published for o in ("ord-new", "ord-old", "ord-null")] == [False, True, False]
    assert len(await store.rows()) == 3
    assert await store.insert_or_get_many([], "pydantic") == {}


@pytest.mark.integration
@pytest.mark.parametrize("batch_size", [1, 3], ids=["alone", "in a batch of three"])
async def test_store__a_row_the_store_cannot_hold__refused_as_such_and_nothing_of_its_batch_stored(
    store: ResultStore, batch_size: int
) -> None:
    """RowRefusedError on both stores (execution dead-letters that order alone and stores the
    others one by one), never an error that reads as an outage and is retried for ever."""
    # PostgreSQL cannot hold a NUL in a text; SQLite cannot bind a lone surrogate.
    bad = "ord-\x00" if isinstance(store, PostgresStore) else "ord-\ud800"
    rows = [{**RESULT, "order_id": order_id} for order_id in ("ord-a", bad, "ord-b")[:batch_size]]
    if batch_size == 1:
        rows = [{**RESULT, "order_id": bad}]

    with pytest.raises(RowRefusedError):
        await store.insert_or_get_many(rows, "pydantic")

    assert await store.rows() == []
    stored = await store.insert_or_get_many([{**RESULT, "order_id": "ord-a"}], "pydantic")
    assert list(stored) == ["ord-a"]  # the store goes on


@pytest.mark.integration
@pytest.mark.parametrize("batch_size", [1, 3], ids=["a batch of one", "a batch of three"])
async def test_store__a_batch_of_one_stores_marks_and_returns_rows_as_a_larger_batch_does(
    store: ResultStore, batch_size: int
) -> None:
    # A batch of one takes its own statements (plain parameters, no arrays): the rows it stores,
    # keeps and returns, and the marks it writes, are those of any other batch.
    rows = [
        {**RESULT, "order_id": "ord-0", "status": "REJECTED", "average_price": None, "reason": "no"},
        {**RESULT, "order_id": "ord-1", "average_price": Decimal("0.30000000000000004")},
        {**RESULT, "order_id": "ord-2", "fee": Decimal("1E-7")},
    ]
    batches = [rows[i : i + batch_size] for i in range(0, len(rows), batch_size)]
    for batch in batches:
        stored = await store.insert_or_get_many(batch, "pydantic")
        assert {o: (s.values, s.published) for o, s in stored.items()} == {
            row["order_id"]: (row, False) for row in batch
        }
    for batch in batches:
        await store.mark_published_many([(row["order_id"], f"{n}-0") for n, row in enumerate(batch, 1)])
    for batch in batches:  # again, with other values: the first rows come back, now published
        again = await store.insert_or_get_many([{**row, "fee": Decimal("99")} for row in batch], "legacy")
        assert {o: (s.values, s.published) for o, s in again.items()} == {
            row["order_id"]: (row, True) for row in batch
        }
    assert await store.rows() == rows


async def _store_one(store: PostgresStore, rows: list[dict[str, Any]]) -> dict[str, StoredResult]:
    return {rows[0]["order_id"]: await store.insert_or_get(rows[0], "pydantic")}


async def _store_many(store: PostgresStore, rows: list[dict[str, Any]]) -> dict[str, StoredResult]:
    return await store.insert_or_get_many(rows, "pydantic")


@pytest.mark.integration
@pytest.mark.parametrize(
    ("call", "batch"),
    [
        pytest.param(_store_one, [RESULT], id="one order"),
        pytest.param(_store_many, [RESULT, {**RESULT, "order_id": "ord-2"}], id="a batch"),
    ],
)
async def test_store__insert_or_get_racing_another_instance_returns_the_rows_that_won(
    pg_database: str,
    call: Callable[[PostgresStore, list[dict[str, Any]]], Awaitable[dict[str, StoredResult]]],
    batch: list[dict[str, Any]],
) -> None:
    # Another instance inserts the same order in a transaction still open when this call starts:
    # the call waits on that row, finds it committed after its statement's snapshot, inserts
    # nothing for it, and must still return the winner's row (not nothing, not its own values),
    # beside the rest of the batch as given.
    store = PostgresStore(pg_database, schema=f"t_{uuid.uuid4().hex[:8]}")
    await store.migrate()
    winner = {**RESULT, "fee": Decimal("0.5")}
    other = await psycopg.AsyncConnection.connect(pg_database)
    watcher = await psycopg.AsyncConnection.connect(pg_database, autocommit=True)  # fresh view each poll
    try:
        await other.execute(f'SET search_path TO "{store._schema}"')
        await other.execute(
            store_module._PG_INSERT, (*store_module._exact_row(winner, STORED_COLUMNS), "legacy")
        )
        racing = asyncio.create_task(call(store, batch))
        await waits_on_a_lock(watcher, "WITH ")  # the call waits on that row
        await other.commit()
        stored = await racing
        expected = [winner, *batch[1:]]
        assert {order_id: s.values for order_id, s in stored.items()} == {
            row["order_id"]: row for row in expected
        }
        assert await store.rows() == expected
    finally:
        await other.close()
        await watcher.close()
        await store.drop_schema()
        await store.close()
