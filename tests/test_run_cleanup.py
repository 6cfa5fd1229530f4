"""``cdb run`` on real servers removes what it wrote (keys, schema, SQLite file) unless ``--keep``."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest
import redis

from services.ws.replay import BUNDLED_TRADES_SMALL
from tests.ops_helpers import cdb

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _keys(redis_url: str, prefix: str) -> int:
    client = redis.Redis.from_url(redis_url)
    try:
        return len(list(client.scan_iter(match=f"{prefix}*")))
    finally:
        client.close()


def _run(redis_url: str, *extra: str, **env: str) -> dict[str, object]:
    result = cdb(
        "run", "--data", str(BUNDLED_TRADES_SMALL), "--redis-url", redis_url, "--json", *extra, **env
    )
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def test_cdb_run__removes_its_keys_schema_and_nothing_else(
    redis_url: str, pg_database: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    summary = _run(redis_url, DATABASE_URL=pg_database)
    removed = " ".join(summary["leftovers"]["removed"])  # type: ignore[index]
    assert "Redis keys under prefix 'cdb-run-" in removed
    assert "PostgreSQL schema run_" in removed
    prefix = removed.split("prefix '")[1].split("'")[0]
    assert _keys(redis_url, prefix) == 0
    with psycopg.connect(pg_database) as conn:
        schemas = [r[0] for r in conn.execute("SELECT nspname FROM pg_namespace WHERE nspname LIKE 'run_%'")]
    assert schemas == []
    assert summary["order_results"] == summary["stored_rows"]


def test_cdb_run__keep_leaves_keys_and_sqlite_and_names_them(
    redis_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    summary = _run(redis_url, "--keep")
    kept = " ".join(summary["leftovers"]["kept"])  # type: ignore[index]
    prefix = kept.split("prefix '")[1].split("'")[0]
    try:
        assert _keys(redis_url, prefix) > 0
        assert summary["leftovers"]["removed"] == []  # type: ignore[index]
        [sqlite] = (tmp_path / "var" / "runs").glob("*.sqlite3")
        assert f"SQLite file {Path('var') / 'runs' / sqlite.name}" in kept
    finally:
        client = redis.Redis.from_url(redis_url)
        for key in client.scan_iter(match=f"{prefix}*"):
            client.unlink(key)
        client.close()


def test_cdb_run__given_prefix_is_not_deleted_but_the_sqlite_file_is(
    redis_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    prefix = f"cdbtest:runkeep{tmp_path.name[-6:]}:"
    try:
        summary = _run(redis_url, "--prefix", prefix)
        assert _keys(redis_url, prefix) > 0
        assert any("Redis keys" in k for k in summary["leftovers"]["kept"])  # type: ignore[index]
        assert any("SQLite file" in r for r in summary["leftovers"]["removed"])  # type: ignore[index]
        assert list((tmp_path / "var" / "runs").glob("*.sqlite3")) == []
    finally:
        client = redis.Redis.from_url(redis_url)
        for key in client.scan_iter(match=f"{prefix}*"):
            client.unlink(key)
        client.close()
