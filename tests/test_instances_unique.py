"""Unique instances, consistent settings (issue 16): two execution instances migrate a fresh
database together; a second process with a live instance's name is refused; every instance of
a service must use the same lease TTL."""

from __future__ import annotations

import asyncio
import uuid

import psycopg
import pytest

from services.execution.store import PostgresStore

pytestmark = pytest.mark.integration


async def test_execution_store__instances_migrating_a_fresh_database_together_all_start(
    pg_database: str,
) -> None:
    for _ in range(4):
        schema = f"m{uuid.uuid4().hex[:10]}"
        stores = [PostgresStore(pg_database, schema) for _ in range(4)]
        try:
            outcomes = await asyncio.gather(*(s.migrate() for s in stores), return_exceptions=True)
            assert [o for o in outcomes if isinstance(o, BaseException)] == []
            with psycopg.connect(pg_database) as conn:
                versions = conn.execute(
                    f'SELECT version FROM "{schema}".schema_migrations ORDER BY 1'
                ).fetchall()
            assert [v for (v,) in versions] == list(range(1, len(versions) + 1))
            assert len(versions) >= 1
        finally:
            for store in stores:
                await store.close()
            with psycopg.connect(pg_database, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
