"""Undoing an isolated pipeline run of a test: its PostgreSQL schema and its Redis keys."""

from __future__ import annotations

import redis.asyncio as aioredis

from core.topics import KeySpace
from services.execution.store import PostgresStore

__all__ = ["discard_run"]


async def discard_run(client: aioredis.Redis, store: PostgresStore, keys: KeySpace) -> None:
    """Drop ``store``'s schema and close it, delete every key under ``keys`` and close ``client``."""
    await store.drop_schema()
    await store.close()
    found = [k async for k in client.scan_iter(match=keys.all_keys_pattern())]
    if found:
        await client.unlink(*found)
    await client.aclose()
