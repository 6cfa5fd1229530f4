"""Real servers for the integration tests: the shared ones, and throwaway Redis processes."""

from __future__ import annotations

import os

from harness.local_redis import LocalRedisServer, free_port

__all__ = ["PG_ADMIN_URL", "REDIS_URL", "ThrowawayRedis", "free_port"]

REDIS_URL = os.environ.get("CDB_TEST_REDIS_URL", "redis://127.0.0.1:6379/13")
"""The shared Redis server; tests isolate themselves by key prefix on database 13."""

PG_ADMIN_URL = os.environ.get("CDB_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
"""Where the tests create (and later drop) their own database."""


ThrowawayRedis = LocalRedisServer
"""A redis-server process of the test's own on a free port (stop / restart / close)."""
