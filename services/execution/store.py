"""Where execution keeps its order results: PostgreSQL (psycopg 3) or a local SQLite file.

What the store promises (and what it does not):

* **One row per order.** :meth:`ResultStore.insert` is idempotent on ``order_id``: the
  first fill is kept, a second insert of the same order changes nothing. The result is
  stored *before* it is published, so a redelivered order is never filled twice.
* **One round trip to store or find.** :meth:`ResultStore.insert_or_get` inserts the result
  unless the order has a row, and returns the row either way (the first fill): one statement in
  PostgreSQL, where a ``SELECT`` then an ``INSERT`` took two round trips.
* **A batch in one round trip.** :meth:`ResultStore.insert_or_get_many` does the same for a
  batch of orders in one statement and one commit (all stored or, raising, none): execution
  stores a whole batch's fills before publishing any of them.
* **A published state.** ``published_stream_id`` is empty until :meth:`mark_published` (or
  :meth:`mark_published_many`, one statement and one commit for a whole batch) records the
  stream id the result got. A crash or a database failure between insert and mark leaves the
  row unpublished; the redelivered order then finishes the job.
* **Not, by itself, one publish per order.** The store cannot know whether a publish it
  has not yet recorded reached Redis. That half is
  :class:`services.execution.once.OncePublisher`'s: the publish is idempotent per order
  id in Redis, so the redelivery gets the first stream id back instead of publishing
  again. Together: exactly one row and exactly one ``order_results`` entry per order,
  whichever of store, publish and mark fails (tests/test_execution_once.py).
* Every call may raise the driver's connection error (``psycopg.OperationalError``)
  while the database is down; the service's consumer leaves the order pending and
  retries it. A broken connection is replaced on the next call. A connection that cannot be
  opened raises :class:`StoreUnavailableError` (still a ``psycopg.OperationalError``) within
  :data:`CONNECT_TIMEOUT_S`: one line naming the URL (password hidden) and what is wrong.

The table is created and upgraded by versioned migrations that run at start. Sizes, prices and
fees are exact decimals (contract v2.0): ``NUMERIC`` in PostgreSQL, the decimal's text in SQLite
(whose ``NUMERIC`` affinity would turn it back into a binary float); every call takes a
:class:`~decimal.Decimal` or a float (read as its shortest round-tripping decimal, as the v1 -> v2
converter does) and returns :class:`~decimal.Decimal`. Migration 2 moved the v1 ``DOUBLE
PRECISION`` columns there, each existing value becoming that same shortest decimal. Migration 3
added ``ordered_quantity`` (the order's size, which v1.1+ results carry): nullable, ``NULL`` in
the rows stored before it, so a result rebuilt from such a row says "unknown", as v1.1 allows.
"""

from __future__ import annotations

import asyncio
import os
import re
import sqlite3
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import dict_row

from core.errors import CdbError, TransportError
from core.urls import redact_url
from core.versions.changes import float_to_decimal
from core.versions.fields import plain_decimal

__all__ = [
    "COLUMNS",
    "CONNECT_TIMEOUT_S",
    "DECIMAL_COLUMNS",
    "STORED_COLUMNS",
    "PostgresStore",
    "ResultStore",
    "RowRefusedError",
    "SqliteStore",
    "StoreUnavailableError",
    "StoredResult",
    "open_store",
]


class RowRefusedError(CdbError):
    """The store refused a row for what it holds (PostgreSQL's data and integrity errors: a NUL
    in a text, a number out of the column's range; SQLite's, and a text it cannot encode), not
    because it is unreachable: storing the same row again fails again."""


class StoreUnavailableError(TransportError, psycopg.OperationalError):
    """PostgreSQL cannot be connected to: it does not answer (refused, timed out, no such host)
    or it refuses the connection (no such database or role, a wrong password). The message is
    one line naming the URL with its password hidden; being a ``psycopg.OperationalError`` too,
    it is caught wherever the driver's connection error is."""


COLUMNS = (
    "order_id",
    "symbol",
    "side",
    "status",
    "filled_quantity",
    "average_price",
    "fee",
    "reason",
    "simulated",
)
"""The business columns of a stored order result that every contract version carries (v1.0's
fields minus envelope)."""

STORED_COLUMNS = (*COLUMNS, "ordered_quantity")
"""Every business column stored: :data:`COLUMNS` and the order's size (migration 3; v1.1+
results carry it, ``None`` for rows stored before it)."""

DECIMAL_COLUMNS = ("filled_quantity", "average_price", "fee", "ordered_quantity")
"""The columns holding exact decimals (read back as :class:`~decimal.Decimal`; ``average_price``
and ``ordered_quantity`` may be null)."""

_V1_DECIMALS = ("filled_quantity", "average_price", "fee")
"""The decimal columns of the v1 table, as migration 2 converted them (never changes)."""

_CREATE_V1 = """
    CREATE TABLE IF NOT EXISTS order_results (
        order_id TEXT PRIMARY KEY,
        symbol TEXT NOT NULL,
        side TEXT NOT NULL,
        status TEXT NOT NULL,
        filled_quantity DOUBLE PRECISION NOT NULL,
        average_price DOUBLE PRECISION,
        fee DOUBLE PRECISION NOT NULL,
        reason TEXT,
        simulated BOOLEAN NOT NULL,
        path TEXT NOT NULL,
        published_stream_id TEXT
    )
"""

# PostgreSQL's own float8 -> numeric cast keeps only 15 significant digits (0.30000000000000004
# would become 0.3); float8's text output with extra_float_digits >= 1 is the shortest string
# that reads back as the same double (what Python's repr and the v1 -> v2 converter write).
_TO_NUMERIC = ", ".join(f"ALTER COLUMN {c} TYPE NUMERIC USING {c}::text::numeric" for c in _V1_DECIMALS)
_MIGRATIONS: tuple[str, ...] = (
    _CREATE_V1,
    f"ALTER TABLE order_results {_TO_NUMERIC}",
    "ALTER TABLE order_results ADD COLUMN ordered_quantity NUMERIC",
)
"""PostgreSQL: version N is ``_MIGRATIONS[N - 1]``; never edit a shipped one, append."""
_SCHEMA_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_OPTIONAL = frozenset({"ordered_quantity"})
"""Columns a caller may leave out of ``values`` (stored as ``NULL``)."""

_COLS = ", ".join(STORED_COLUMNS)
_INSERT_COLS = f"{_COLS}, path"
_PG_GET = f"SELECT {_COLS}, published_stream_id FROM order_results WHERE order_id = %s"
_PG_INSERT = (
    f"INSERT INTO order_results ({_INSERT_COLS}) VALUES ({', '.join(['%s'] * (len(STORED_COLUMNS) + 1))}) "
    "ON CONFLICT (order_id) DO NOTHING"
)
_PG_TYPES = {
    "filled_quantity": "numeric",
    "average_price": "numeric",
    "fee": "numeric",
    "ordered_quantity": "numeric",
    "simulated": "boolean",
}
# Many rows in one statement: one array per column (unnest), the inserted rows (RETURNING) and the
# rows that were there, read from the statement's snapshot (taken before the insert, so it never
# sees a row this insert adds: no order comes back twice).
_PG_INSERT_OR_GET_MANY = (
    "WITH input AS (SELECT * FROM unnest("
    + ", ".join(f"%s::{_PG_TYPES.get(c, 'text')}[]" for c in STORED_COLUMNS)
    + f") AS t({_COLS})), "
    f"inserted AS (INSERT INTO order_results ({_INSERT_COLS}) SELECT {_COLS}, %s FROM input "
    f"ON CONFLICT (order_id) DO NOTHING RETURNING {_COLS}, published_stream_id) "
    f"SELECT * FROM inserted UNION ALL "
    f"SELECT {_COLS}, published_stream_id FROM order_results WHERE order_id = ANY(%s)"
)
# One row (nearly every batch at a low rate): the same statement with the row as plain
# parameters. Ten one-element arrays cost PostgreSQL and the client more than the row itself:
# 0.26 vs 0.15 ms a call back to back (client CPU 160 vs 110 us), 0.79 vs 0.66 ms one call every
# 110 ms as at 1,000 market_data/s (both without the commit's flush, which adds ~1.1 ms to either).
_PG_INSERT_OR_GET_ONE = (
    f"WITH inserted AS ({_PG_INSERT} RETURNING {_COLS}, published_stream_id) "
    f"SELECT * FROM inserted UNION ALL "
    f"SELECT {_COLS}, published_stream_id FROM order_results WHERE order_id = %s"
)
_PG_GET_MANY = f"SELECT {_COLS}, published_stream_id FROM order_results WHERE order_id = ANY(%s)"
_PG_MARK = (
    "UPDATE order_results AS r SET published_stream_id = m.stream_id "
    "FROM unnest(%s::text[], %s::text[]) AS m(order_id, stream_id) WHERE r.order_id = m.order_id"
)
_PG_MARK_ONE = "UPDATE order_results SET published_stream_id = %s WHERE order_id = %s"
_ROWS = f"SELECT {_COLS} FROM order_results ORDER BY order_id"
_LITE_GET = f"SELECT {_COLS}, published_stream_id FROM order_results WHERE order_id = ?"
_LITE_MARKS = ", ".join(["?"] * (len(STORED_COLUMNS) + 1))
_LITE_INSERT = f"INSERT OR IGNORE INTO order_results ({_INSERT_COLS}) VALUES ({_LITE_MARKS})"


@dataclass(frozen=True, slots=True)
class StoredResult:
    """A stored order result and whether it was published."""

    values: dict[str, Any]
    published: bool


class ResultStore(Protocol):
    """Idempotent storage of order results."""

    async def migrate(self) -> None:
        """Create or upgrade the tables (safe to run at every start)."""
        ...

    async def get(self, order_id: str) -> StoredResult | None:
        """The stored result of ``order_id``, if any."""
        ...

    async def insert(self, values: dict[str, Any], path: str) -> bool:
        """Store a result; ``False`` if ``order_id`` was already stored (nothing changes)."""
        ...

    async def insert_or_get(self, values: dict[str, Any], path: str) -> StoredResult:
        """Store a result unless ``order_id`` was stored; either way return the stored row (the
        first one: its values, not ``values``, when the order was stored before)."""
        ...

    async def insert_or_get_many(self, rows: Sequence[dict[str, Any]], path: str) -> dict[str, StoredResult]:
        """:meth:`insert_or_get` for every row at once (one round trip, one commit: all of them
        or, raising, none), the stored row by ``order_id``; a second row of an ``order_id``
        already in ``rows`` changes nothing (the first one is stored). Raises
        :class:`RowRefusedError` when the store refuses a row's values (then none is stored)."""
        ...

    async def mark_published(self, order_id: str, stream_id: str) -> None:
        """Record that the result reached the stream."""
        ...

    async def mark_published_many(self, marks: Sequence[tuple[str, str]]) -> None:
        """Record ``(order_id, stream_id)`` pairs at once: all of them or (raising) none."""
        ...

    async def rows(self) -> list[dict[str, Any]]:
        """Every stored result's business columns, ordered by ``order_id``."""
        ...

    async def close(self) -> None:
        """Release the connection."""
        ...


class PostgresStore:
    """Order results in PostgreSQL, optionally in their own schema (for isolated pipelines)."""

    def __init__(self, url: str, schema: str = "public") -> None:
        if not _SCHEMA_RE.match(schema):
            raise ValueError(f"schema name {schema!r} is not a plain lower-case identifier")
        self._url = url
        self._schema = schema
        self._conn: psycopg.AsyncConnection[dict[str, Any]] | None = None

    async def _connection(self) -> psycopg.AsyncConnection[dict[str, Any]]:
        if self._conn is None or self._conn.closed:
            try:
                self._conn = await psycopg.AsyncConnection.connect(
                    self._url, autocommit=True, row_factory=dict_row, **_connect_timeout(self._url)
                )
            except psycopg.OperationalError as exc:
                raise _unavailable(self._url, exc) from exc
            async with self._conn.transaction():
                # Two instances starting together on a fresh database would both create the
                # schema (and the migrations table): IF NOT EXISTS is not atomic in PostgreSQL,
                # the loser fails with UniqueViolation. One advisory lock per schema serialises them.
                await self._migration_lock(self._conn)
                await self._conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{self._schema}"')
            await self._conn.execute(f'SET search_path TO "{self._schema}"')
        return self._conn

    async def _migration_lock(self, conn: psycopg.AsyncConnection[dict[str, Any]]) -> None:
        # Held until the transaction ends; the key is this schema's (other schemas go on).
        key = zlib.crc32(f"cdb-migrate:{self._schema}".encode())
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (key,))

    async def migrate(self) -> None:
        """Apply the migrations not yet recorded in ``schema_migrations``."""
        conn = await self._connection()
        async with conn.transaction():
            await self._migration_lock(conn)  # before the table exists: nobody races its creation
            await conn.execute("SET LOCAL extra_float_digits = 1")  # float8 as text: shortest exact
            await conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY)")
            cur = await conn.execute("SELECT COALESCE(MAX(version), 0) AS v FROM schema_migrations")
            row = await cur.fetchone()
            done = int(row["v"]) if row else 0
            for version, sql in enumerate(_MIGRATIONS, 1):
                if version > done:
                    await conn.execute(sql)
                    await conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (version,))

    async def get(self, order_id: str) -> StoredResult | None:
        """The stored result of ``order_id``, if any."""
        conn = await self._connection()
        cur = await conn.execute(_PG_GET, (order_id,))
        row = await cur.fetchone()
        return None if row is None else _pg_stored(row)

    async def insert(self, values: dict[str, Any], path: str) -> bool:
        """``INSERT ... ON CONFLICT (order_id) DO NOTHING``."""
        conn = await self._connection()
        cur = await conn.execute(_PG_INSERT, (*_exact_row(values, STORED_COLUMNS), path))
        return cur.rowcount == 1

    async def insert_or_get(self, values: dict[str, Any], path: str) -> StoredResult:
        """:meth:`insert_or_get_many` of one row."""
        return (await self.insert_or_get_many([values], path))[values["order_id"]]

    async def insert_or_get_many(self, rows: Sequence[dict[str, Any]], path: str) -> dict[str, StoredResult]:
        """One statement (one round trip, one commit) for every row: ``INSERT ... SELECT FROM
        unnest(...) ON CONFLICT DO NOTHING RETURNING`` (``INSERT ... VALUES`` for one row), and
        the rows that were there."""
        unique = _first_per_order(rows)
        if not unique:
            return {}
        conn = await self._connection()
        ids = [values["order_id"] for values in unique]
        try:
            if len(unique) == 1:
                params = _exact_row(unique[0], STORED_COLUMNS)
                cur = await conn.execute(_PG_INSERT_OR_GET_ONE, (*params, path, ids[0]))
            else:
                columns = list(zip(*(_exact_row(values, STORED_COLUMNS) for values in unique), strict=True))
                cur = await conn.execute(_PG_INSERT_OR_GET_MANY, (*map(list, columns), path, ids))
        except (psycopg.DataError, psycopg.IntegrityError) as exc:  # autocommit: nothing stored
            raise RowRefusedError(f"PostgreSQL refused the row: {type(exc).__name__}: {exc}") from exc
        stored = {row["order_id"]: _pg_stored(row) for row in await cur.fetchall()}
        missing = [order_id for order_id in ids if order_id not in stored]
        if missing:
            # Neither inserted nor in the snapshot: another instance inserted the order after this
            # statement's snapshot was taken (this insert waited for it and did nothing). A new
            # statement sees it.
            cur = await conn.execute(_PG_GET_MANY, (missing,))
            stored.update((row["order_id"], _pg_stored(row)) for row in await cur.fetchall())
        if len(stored) < len(ids):  # pragma: no cover - a conflict means the row exists
            raise RuntimeError(f"orders {sorted(set(ids) - stored.keys())} conflicted but have no row")
        return stored

    async def mark_published(self, order_id: str, stream_id: str) -> None:
        """Record the stream id the result was published under."""
        await self.mark_published_many([(order_id, stream_id)])

    async def mark_published_many(self, marks: Sequence[tuple[str, str]]) -> None:
        """One ``UPDATE ... FROM unnest(...)`` for every pair (a plain ``UPDATE`` for one; one
        statement, one commit)."""
        if not marks:
            return
        conn = await self._connection()
        if len(marks) == 1:
            await conn.execute(_PG_MARK_ONE, (marks[0][1], marks[0][0]))
        else:
            await conn.execute(_PG_MARK, ([m[0] for m in marks], [m[1] for m in marks]))

    async def rows(self) -> list[dict[str, Any]]:
        """Every stored result, ordered by ``order_id``."""
        conn = await self._connection()
        cur = await conn.execute(_ROWS)
        return [dict(r) for r in await cur.fetchall()]

    async def drop_schema(self) -> None:
        """Drop this store's own schema (only for schemas a test or matrix run created)."""
        conn = await self._connection()
        await conn.execute(f'DROP SCHEMA IF EXISTS "{self._schema}" CASCADE')

    async def close(self) -> None:
        """Close the connection."""
        if self._conn is not None:
            await self._conn.close()
            self._conn = None


_LITE_REFUSALS = (sqlite3.IntegrityError, sqlite3.DataError, UnicodeEncodeError, OverflowError)
"""What SQLite (or binding a value for it) raises for a row's values: a lone surrogate in a
text, an integer past 64 bits, a constraint."""


class SqliteStore:
    """Order results in a local SQLite file (the default without ``DATABASE_URL``)."""

    def __init__(self, path: str | Path) -> None:
        self._path = str(path)
        if self._path != ":memory:":
            Path(self._path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self._path, check_same_thread=False, isolation_level=None)
        self._lock = asyncio.Lock()

    async def migrate(self) -> None:
        """Apply the migrations not yet recorded in ``schema_migrations``."""
        async with self._lock:
            self._db.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY)")
            done = self._db.execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations").fetchone()[0]
            for version, step in enumerate(_SQLITE_MIGRATIONS, 1):
                if version > done:
                    # One transaction per migration: a crash leaves the table as it was before it.
                    self._db.execute("BEGIN IMMEDIATE")
                    try:
                        step(self._db)
                        self._db.execute("INSERT INTO schema_migrations (version) VALUES (?)", (version,))
                    except BaseException:
                        self._db.execute("ROLLBACK")
                        raise
                    self._db.execute("COMMIT")

    async def get(self, order_id: str) -> StoredResult | None:
        """The stored result of ``order_id``, if any."""
        async with self._lock:
            return self._get(order_id)

    def _get(self, order_id: str) -> StoredResult | None:
        row = self._db.execute(_LITE_GET, (order_id,)).fetchone()
        if row is None:
            return None
        return StoredResult(_from_sqlite(row[:-1]), row[-1] is not None)

    async def insert(self, values: dict[str, Any], path: str) -> bool:
        """``INSERT OR IGNORE``: idempotent on ``order_id``."""
        async with self._lock:
            cur = self._db.execute(_LITE_INSERT, (*_text_row(values, STORED_COLUMNS), path))
        return cur.rowcount == 1

    async def insert_or_get(self, values: dict[str, Any], path: str) -> StoredResult:
        """:meth:`insert_or_get_many` of one row."""
        return (await self.insert_or_get_many([values], path))[values["order_id"]]

    async def insert_or_get_many(self, rows: Sequence[dict[str, Any]], path: str) -> dict[str, StoredResult]:
        """Every ``INSERT OR IGNORE`` and the read back in one transaction (one commit)."""
        unique = _first_per_order(rows)
        if not unique:
            return {}
        async with self._lock:
            self._db.execute("BEGIN")
            try:
                self._db.executemany(_LITE_INSERT, [(*_text_row(v, STORED_COLUMNS), path) for v in unique])
                stored = {v["order_id"]: self._get(v["order_id"]) for v in unique}
            except BaseException as exc:
                self._db.execute("ROLLBACK")
                if isinstance(exc, _LITE_REFUSALS):
                    raise RowRefusedError(f"SQLite refused the row: {type(exc).__name__}: {exc}") from exc
                raise
            self._db.execute("COMMIT")
        return {order_id: s for order_id, s in stored.items() if s is not None}

    async def mark_published(self, order_id: str, stream_id: str) -> None:
        """Record the stream id the result was published under."""
        await self.mark_published_many([(order_id, stream_id)])

    async def mark_published_many(self, marks: Sequence[tuple[str, str]]) -> None:
        """Every pair in one transaction."""
        if not marks:
            return
        async with self._lock:
            self._db.execute("BEGIN")
            try:
                self._db.executemany(
                    "UPDATE order_results SET published_stream_id = ? WHERE order_id = ?",
                    [(stream_id, order_id) for order_id, stream_id in marks],
                )
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    async def rows(self) -> list[dict[str, Any]]:
        """Every stored result, ordered by ``order_id``."""
        async with self._lock:
            rows = self._db.execute(_ROWS).fetchall()
        return [_from_sqlite(r) for r in rows]

    async def close(self) -> None:
        """Close the database file."""
        self._db.close()


def _first_per_order(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """``rows`` without a second row of the same ``order_id`` (the first one is stored)."""
    seen: dict[str, dict[str, Any]] = {}
    for values in rows:
        seen.setdefault(values["order_id"], values)
    return list(seen.values())


def _exact(value: Any) -> Decimal | None:
    if value is None or isinstance(value, Decimal):
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"an exact decimal, float or int is stored, not {type(value).__name__}")
    return float_to_decimal(float(value))


def _exact_row(values: dict[str, Any], columns: Sequence[str]) -> list[Any]:
    """The row's values in ``columns`` order, sizes/prices/fees as :class:`Decimal`
    (``ordered_quantity`` may be missing: a result built without it stores ``NULL``)."""
    return [
        _exact(values.get(c) if c in _OPTIONAL else values[c]) if c in DECIMAL_COLUMNS else values[c]
        for c in columns
    ]


def _text_row(values: dict[str, Any], columns: Sequence[str]) -> list[Any]:
    """The SQLite row: the decimals as their plain text (exact, whatever SQLite's affinity)."""
    row = _exact_row(values, columns)
    for i, c in enumerate(columns):
        if c in DECIMAL_COLUMNS and row[i] is not None:
            row[i] = plain_decimal(row[i])
    return row


def _from_sqlite(row: Any) -> dict[str, Any]:
    values = dict(zip(STORED_COLUMNS, row, strict=True))
    values["simulated"] = bool(values["simulated"])
    for c in DECIMAL_COLUMNS:
        if values[c] is not None:
            values[c] = Decimal(values[c])
    return values


def _pg_stored(row: dict[str, Any]) -> StoredResult:
    published = row.pop("published_stream_id") is not None
    return StoredResult(row, published)


def _sqlite_to_text(db: sqlite3.Connection) -> None:
    # SQLite cannot change a column's type: the table is rebuilt with TEXT columns, each REAL
    # value written as its shortest round-tripping decimal (SQLite's own CAST keeps 15 digits).
    db.execute("ALTER TABLE order_results RENAME TO order_results_v1")
    db.execute(
        _CREATE_V1.replace("DOUBLE PRECISION", "TEXT").replace("CREATE TABLE IF NOT EXISTS", "CREATE TABLE")
    )
    cols = ", ".join((*COLUMNS, "path", "published_stream_id"))
    for row in db.execute(f"SELECT {cols} FROM order_results_v1").fetchall():
        values = dict(zip((*COLUMNS, "path", "published_stream_id"), row, strict=True))
        db.execute(
            f"INSERT INTO order_results ({cols}) VALUES ({', '.join(['?'] * (len(COLUMNS) + 2))})",
            (*_text_row(values, COLUMNS), values["path"], values["published_stream_id"]),
        )
    db.execute("DROP TABLE order_results_v1")


_SQLITE_MIGRATIONS: tuple[Callable[[sqlite3.Connection], Any], ...] = (
    lambda db: db.execute(_CREATE_V1),
    _sqlite_to_text,
    # The decimal's text, as migration 2 made the other amounts (NUMERIC affinity would not keep it).
    lambda db: db.execute("ALTER TABLE order_results ADD COLUMN ordered_quantity TEXT"),
)
"""SQLite: the same versions as :data:`_MIGRATIONS`, the second one done in Python."""


CONNECT_TIMEOUT_S = 5
"""Seconds a PostgreSQL connection may take to open unless ``connect_timeout`` in the URL (or
PGCONNECT_TIMEOUT) says otherwise: psycopg's own default is 130 s, which a host that does not
answer turns into two minutes of silence at start."""

# psycopg names the server before libpq's reason; the URL in our message already does.
_PG_WHERE = re.compile(r"^(?:connection failed: )?(?:connection to server (?:at|on) .*? failed: )?")


def _connect_timeout(url: str) -> dict[str, Any]:
    """``connect_timeout`` for psycopg, unless the URL or the environment sets one."""
    try:
        given = "connect_timeout" in conninfo_to_dict(url)
    except psycopg.Error:
        given = False  # psycopg's connect reports the bad URL itself
    return {} if given or os.environ.get("PGCONNECT_TIMEOUT") else {"connect_timeout": CONNECT_TIMEOUT_S}


def _unavailable(url: str, exc: psycopg.OperationalError) -> StoreUnavailableError:
    """The one-line error for a connection to ``url`` that failed with ``exc``."""
    reason = " | ".join(line.strip() for line in _PG_WHERE.sub("", str(exc)).splitlines() if line.strip())
    # libpq prefixes what the server said with its severity: the server answered, and refused.
    fatal, sep, said = reason.partition("FATAL:")
    if sep and not fatal.strip():
        return StoreUnavailableError(
            f"PostgreSQL at {redact_url(url)} (DATABASE_URL) refuses the connection: {said.strip()}"
        )
    return StoreUnavailableError(f"PostgreSQL at {redact_url(url)} (DATABASE_URL) does not answer: {reason}")


def open_store(database_url: str | None, *, sqlite_path: str | Path, schema: str = "public") -> ResultStore:
    """PostgreSQL when ``database_url`` is set, otherwise SQLite at ``sqlite_path``."""
    if database_url:
        return PostgresStore(database_url, schema=schema)
    return SqliteStore(sqlite_path)
