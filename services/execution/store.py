"""Where execution keeps its order results: PostgreSQL (psycopg 3) or a local SQLite file.

What the store promises (and what it does not):

* **One row per order.** :meth:`ResultStore.insert` is idempotent on ``order_id``: the
  first fill is kept, a second insert of the same order changes nothing. The result is
  stored *before* it is published, so a redelivered order is never filled twice.
* **A published state.** ``published_stream_id`` is empty until :meth:`mark_published`
  records the stream id the result got. A crash or a database failure between insert
  and mark leaves the row unpublished; the redelivered order then finishes the job.
* **Not, by itself, one publish per order.** The store cannot know whether a publish it
  has not yet recorded reached Redis. That half is
  :class:`services.execution.once.OncePublisher`'s: the publish is idempotent per order
  id in Redis, so the redelivery gets the first stream id back instead of publishing
  again. Together: exactly one row and exactly one ``order_results`` entry per order,
  whichever of store, publish and mark fails (tests/test_execution_once.py).
* Every call may raise the driver's connection error (``psycopg.OperationalError``)
  while the database is down; the service's consumer leaves the order pending and
  retries it. A broken connection is replaced on the next call.

The table is created by a versioned migration that runs at start.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import psycopg
from psycopg.rows import dict_row

__all__ = ["COLUMNS", "PostgresStore", "ResultStore", "SqliteStore", "StoredResult", "open_store"]

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
"""The business columns of a stored order result (the contract's fields minus envelope)."""

_MIGRATIONS: tuple[str, ...] = (
    """
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
    """,
)
_SCHEMA_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


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

    async def mark_published(self, order_id: str, stream_id: str) -> None:
        """Record that the result reached the stream."""
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
            self._conn = await psycopg.AsyncConnection.connect(
                self._url, autocommit=True, row_factory=dict_row
            )
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
        cur = await conn.execute(
            f"SELECT {', '.join(COLUMNS)}, published_stream_id FROM order_results WHERE order_id = %s",
            (order_id,),
        )
        row = await cur.fetchone()
        if row is None:
            return None
        published = row.pop("published_stream_id") is not None
        return StoredResult(dict(row), published)

    async def insert(self, values: dict[str, Any], path: str) -> bool:
        """``INSERT ... ON CONFLICT (order_id) DO NOTHING``."""
        conn = await self._connection()
        cols = ", ".join((*COLUMNS, "path"))
        marks = ", ".join(["%s"] * (len(COLUMNS) + 1))
        cur = await conn.execute(
            f"INSERT INTO order_results ({cols}) VALUES ({marks}) ON CONFLICT (order_id) DO NOTHING",
            (*(values[c] for c in COLUMNS), path),
        )
        return cur.rowcount == 1

    async def mark_published(self, order_id: str, stream_id: str) -> None:
        """Record the stream id the result was published under."""
        conn = await self._connection()
        await conn.execute(
            "UPDATE order_results SET published_stream_id = %s WHERE order_id = %s", (stream_id, order_id)
        )

    async def rows(self) -> list[dict[str, Any]]:
        """Every stored result, ordered by ``order_id``."""
        conn = await self._connection()
        cur = await conn.execute(f"SELECT {', '.join(COLUMNS)} FROM order_results ORDER BY order_id")
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
            for version, sql in enumerate(_MIGRATIONS, 1):
                if version > done:
                    self._db.execute(sql)
                    self._db.execute("INSERT INTO schema_migrations (version) VALUES (?)", (version,))

    async def get(self, order_id: str) -> StoredResult | None:
        """The stored result of ``order_id``, if any."""
        async with self._lock:
            row = self._db.execute(
                f"SELECT {', '.join(COLUMNS)}, published_stream_id FROM order_results WHERE order_id = ?",
                (order_id,),
            ).fetchone()
        if row is None:
            return None
        values = dict(zip(COLUMNS, row[:-1], strict=True))
        values["simulated"] = bool(values["simulated"])
        return StoredResult(values, row[-1] is not None)

    async def insert(self, values: dict[str, Any], path: str) -> bool:
        """``INSERT OR IGNORE``: idempotent on ``order_id``."""
        cols = ", ".join((*COLUMNS, "path"))
        marks = ", ".join(["?"] * (len(COLUMNS) + 1))
        async with self._lock:
            cur = self._db.execute(
                f"INSERT OR IGNORE INTO order_results ({cols}) VALUES ({marks})",
                (*(values[c] for c in COLUMNS), path),
            )
        return cur.rowcount == 1

    async def mark_published(self, order_id: str, stream_id: str) -> None:
        """Record the stream id the result was published under."""
        async with self._lock:
            self._db.execute(
                "UPDATE order_results SET published_stream_id = ? WHERE order_id = ?", (stream_id, order_id)
            )

    async def rows(self) -> list[dict[str, Any]]:
        """Every stored result, ordered by ``order_id``."""
        async with self._lock:
            rows = self._db.execute(
                f"SELECT {', '.join(COLUMNS)} FROM order_results ORDER BY order_id"
            ).fetchall()
        out = [dict(zip(COLUMNS, r, strict=True)) for r in rows]
        for item in out:
            item["simulated"] = bool(item["simulated"])
        return out

    async def close(self) -> None:
        """Close the database file."""
        self._db.close()


def open_store(database_url: str | None, *, sqlite_path: str | Path, schema: str = "public") -> ResultStore:
    """PostgreSQL when ``database_url`` is set, otherwise SQLite at ``sqlite_path``."""
    if database_url:
        return PostgresStore(database_url, schema=schema)
    return SqliteStore(sqlite_path)
