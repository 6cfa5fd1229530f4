"""A service that stops on an error says so: its last live-state report is ``failed``, with the
error's message, so ``cdb status`` (table and ``--json``), ``cdb health`` and the dashboard tell
"refused to start, here is why" from a crash (stale) and from a clean stop (``stopped``).

Each service runs as ``cdb service`` runs it (:func:`cdb.launcher.run_service`) on the real
Redis, with its settings in the environment.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from cdb.cli.health import verdict
from cdb.cli.status import instance_row
from cdb.launcher import run_service
from core.errors import ConfigError
from core.status import LiveState
from core.topics import KeySpace, ServiceName
from core.utils.clock import now_ms
from services.ws.position import PositionError
from services.ws.replay import BUNDLED_TRADES_SMALL
from services.ws.sources import ReplaySource
from tests.ops_helpers import CLEAN_ENV, cdb, cdb_json, reporting, service_settings, wait_state

pytestmark = pytest.mark.integration


@pytest.fixture
def environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, redis_url: str, keys: KeySpace
) -> Callable[..., None]:
    """Sets a service's environment: the Redis, the prefix, its instance name and ``extra``."""
    for var in CLEAN_ENV:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)

    def set_for(instance: str, **extra: str) -> None:
        for name, value in {
            "REDIS_URL": redis_url,
            "KEY_PREFIX": keys.prefix,
            "INSTANCE": instance,
            **extra,
        }.items():
            monkeypatch.setenv(name, value)

    return set_for


def _status(redis_url: str, keys: KeySpace) -> tuple[dict[str, Any], str]:
    """``cdb status --json`` and the table ``cdb status`` prints."""
    opts = ["--redis-url", redis_url, "--prefix", keys.prefix]
    table = cdb("status", *opts)
    assert table.exit_code == 0, table.output
    return cdb_json("status", *opts), table.output


def _row(status: dict[str, Any], instance: str) -> dict[str, Any]:
    (row,) = [r for r in status["instances"] if r["instance"] == instance]
    return row


def test_live_state__failed_is_its_own_state_with_its_reason_in_status_and_health() -> None:
    state = LiveState("risk", "risk-1", "legacy", None, False, "1", started_ms=now_ms() - 60_000)
    state.state, state.error = "failed", "PRODUCE_VERSION_ORDERS='v1.1' is not accepted"
    state.reported_ms = now_ms() - 60_000  # long past the stale threshold: still failed, not stale

    row = instance_row(state, now_ms())
    ok, reason = verdict([state], ServiceName.RISK, "host", "risk-1", now_ms())

    assert (row["state"], row["stale"], row["error"]) == ("failed", False, state.error)
    assert not state.is_live()
    assert ok is False
    assert reason == f"unhealthy: risk risk-1 failed: {state.error}"
    assert LiveState.from_json(state.to_json()).error == state.error


async def test_cdb_service__refused_by_the_version_gate__reports_failed_with_the_reason(
    redis_async: aioredis.Redis, redis_url: str, keys: KeySpace, environment: Callable[..., None]
) -> None:
    old_execution = service_settings(ServiceName.EXECUTION, keys, "exe-old")  # legacy: reads v1.0 only
    environment("risk-new", USE_PYDANTIC_CONTRACTS="true", PRODUCE_VERSION_ORDERS="v1.1")
    async with reporting(redis_async, old_execution):
        with pytest.raises(ConfigError) as caught:
            await run_service(ServiceName.RISK, asyncio.Event())
        status, table = await asyncio.to_thread(_status, redis_url, keys)

    row = _row(status, "risk-new")
    assert (row["state"], row["stale"], row["error"]) == ("failed", False, str(caught.value))
    assert "FAILED" in table
    assert "risk risk-new failed: PRODUCE_VERSION_ORDERS='v1.1' is not accepted" in table
    assert _row(status, "exe-old")["state"] == "live"  # the gate's reason, untouched


async def test_cdb_service__ws_with_an_unreadable_saved_position__reports_failed_after_running(
    redis_async: aioredis.Redis, redis_url: str, keys: KeySpace, environment: Callable[..., None]
) -> None:
    identity = ReplaySource.from_file(BUNDLED_TRADES_SMALL).identity
    await redis_async.hset(keys.source_positions(), identity, "12x")
    environment("ws-refused", WS_SOURCE="replay", WS_REPLAY_FILE=str(BUNDLED_TRADES_SMALL))

    with pytest.raises(PositionError) as caught:
        await run_service(ServiceName.WS, asyncio.Event())
    status, table = await asyncio.to_thread(_status, redis_url, keys)

    row = _row(status, "ws-refused")
    assert (row["state"], row["stale"], row["error"]) == ("failed", False, str(caught.value))
    assert identity in row["error"]
    assert "'12x'" in row["error"]
    assert "ws ws-refused failed: " in table


async def test_cdb_service__a_clean_stop_reports_stopped_not_failed(
    redis_async: aioredis.Redis, redis_url: str, keys: KeySpace, environment: Callable[..., None]
) -> None:
    environment("risk-clean")
    stop = asyncio.Event()
    task = asyncio.create_task(run_service(ServiceName.RISK, stop))
    await wait_state(redis_async, keys, ServiceName.RISK, "risk-clean")
    stop.set()  # what SIGTERM does
    await asyncio.wait_for(task, timeout=20)
    status, _ = await asyncio.to_thread(_status, redis_url, keys)

    row = _row(status, "risk-clean")
    assert (row["state"], row["error"]) == ("stopped", None)
