"""``cdb run`` on real servers removes what it wrote (keys, schema, SQLite file) unless ``--keep``,
also when the run fails."""

from __future__ import annotations

import json
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import psycopg
import pytest
import redis

import services.pipeline
from cdb.cli import run as run_command
from core.errors import TransportError
from core.logging import configure_logging
from services.ws.replay import BUNDLED_TRADES_SMALL
from tests.ops_helpers import cdb

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """`cdb run` points the JSON logs at CliRunner's stderr, closed after the call: point them
    back at the real stderr so later tests do not log into a closed file."""
    yield
    configure_logging()


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


def _known_run_id(monkeypatch: pytest.MonkeyPatch) -> str:
    """The id the next ``cdb run`` gives itself (so the test knows its key prefix and schema)."""
    fixed = uuid.uuid4()
    monkeypatch.setattr(run_command, "uuid", SimpleNamespace(uuid4=lambda: fixed))
    return fixed.hex[:8]


def _unlink(redis_url: str, prefix: str) -> None:
    """What a failing test leaves under ``prefix`` goes (the shared Redis keeps no test's keys)."""
    client = redis.Redis.from_url(redis_url)
    for key in client.scan_iter(match=f"{prefix}*"):
        client.unlink(key)
    client.close()


def _schemas(database_url: str, name: str) -> list[str]:
    with psycopg.connect(database_url) as conn:
        return [r[0] for r in conn.execute("SELECT nspname FROM pg_namespace WHERE nspname = %s", (name,))]


def test_cdb_run__postgresql_down__fails_within_seconds_in_one_line_and_leaves_no_keys(
    redis_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    run_id = _known_run_id(monkeypatch)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens once the block ends
    started = time.monotonic()
    result = cdb(
        "run",
        "--data",
        str(BUNDLED_TRADES_SMALL),
        "--redis-url",
        redis_url,
        DATABASE_URL=f"postgresql://postgres:S3cret@127.0.0.1:{port}/cdb",
    )
    took = time.monotonic() - started
    try:
        assert result.exit_code == 2, result.output
        [line] = result.stderr.splitlines()
        where = f"postgresql://postgres:***@127.0.0.1:{port}/cdb (DATABASE_URL)"
        assert line.startswith(f"error: PostgreSQL at {where} does not answer: "), line
        assert took < 10, f"{took:.1f}s"  # it used to wait out the 120 s drain timeout first
        assert _keys(redis_url, f"cdb-run-{run_id}:") == 0
        assert list((tmp_path / "var" / "runs").glob("*")) == []
    finally:
        _unlink(redis_url, f"cdb-run-{run_id}:")


def test_cdb_run__fails_after_writing__its_keys_and_schema_are_removed(
    redis_url: str, pg_database: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    run_id = _known_run_id(monkeypatch)
    real_run_pipeline = services.pipeline.run_pipeline

    async def fails_at_the_end(*args: Any, **kwargs: Any) -> Any:
        await real_run_pipeline(*args, **kwargs)  # every stream, group and row written
        raise TransportError("Redis went away while the results were read")

    monkeypatch.setattr(services.pipeline, "run_pipeline", fails_at_the_end)
    result = cdb(
        "run", "--data", str(BUNDLED_TRADES_SMALL), "--redis-url", redis_url, DATABASE_URL=pg_database
    )
    try:
        assert result.exit_code == 2, result.output
        assert result.stderr == "error: Redis went away while the results were read\n"
        assert _keys(redis_url, f"cdb-run-{run_id}:") == 0
        assert _schemas(pg_database, f"run_{run_id}") == []
    finally:
        _unlink(redis_url, f"cdb-run-{run_id}:")
