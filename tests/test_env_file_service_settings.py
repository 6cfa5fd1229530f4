"""``cdb service NAME --env-file F`` takes every setting from the file, not only the flags.

A service's own settings (``WS_*``, ``SIGNAL_*``, ``RISK_*``, ``EXECUTION_*``) and
METRICS_PORT / METRICS_ADDR come from the env file as USE_PYDANTIC_CONTRACTS does (the
environment, where set, still wins: tests/test_flags_service_settings.py). Each service runs
as ``cdb service`` runs it (:func:`cdb.launcher.run_service`) on the real Redis, with only the
connection and the key prefix in the environment; what it does shows the file's value in effect.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis

from cdb.launcher import run_service
from core.codec import build_codec
from core.topics import CodecPath, KeySpace, Profile, ServiceName, Topic
from tests.samples import SAMPLE_TS, VALID_MESSAGES
from tests.service_procs import free_port, scrape
from tests.stream_reading import stream_values
from tests.test_flags_service_settings import CLEAN_ENV

pytestmark = pytest.mark.integration

CODEC = build_codec(CodecPath.PYDANTIC, Profile.STRICT)
PYDANTIC_STRICT = "USE_PYDANTIC_CONTRACTS=true\nCONTRACT_PROFILE=strict\n"  # the path CODEC writes


@pytest.fixture
def environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, redis_url: str, keys: KeySpace
) -> Callable[[ServiceName], None]:
    """Sets only what is not under test in the environment: the Redis, the prefix, the instance.
    The working directory is the test's own (execution's SQLite store goes under var/)."""
    for var in CLEAN_ENV:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)

    def set_for(service: ServiceName) -> None:
        monkeypatch.setenv("REDIS_URL", redis_url)
        monkeypatch.setenv("KEY_PREFIX", keys.prefix)
        monkeypatch.setenv("INSTANCE", f"{service.value}-envfile")

    return set_for


@contextlib.asynccontextmanager
async def running(service: ServiceName, env_file: Path) -> AsyncIterator[asyncio.Task[None]]:
    """``cdb service <service> --env-file <env_file>`` until the block ends."""
    stop = asyncio.Event()
    task = asyncio.create_task(run_service(service, stop, env_file=env_file))
    try:
        yield task
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=20)


async def until(task: asyncio.Task[None], done: Callable[[], Any], what: str, timeout_s: float = 20) -> Any:
    """Poll ``done`` (in a thread: it may block) until it gives a true value; the service's own
    error, if it stopped, rather than a timeout."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not (result := await asyncio.to_thread(done)):
        if task.done():
            task.result()
            pytest.fail(f"the service stopped before {what}")
        assert asyncio.get_running_loop().time() < deadline, f"no {what} within {timeout_s} s"
        await asyncio.sleep(0.1)
    return result


def _publish(client: redis.Redis, keys: KeySpace, topic: Topic, values: dict[str, Any]) -> None:
    client.xadd(keys.stream(topic), CODEC.to_fields(topic, CODEC.build(topic, values)))  # type: ignore[arg-type]


async def test_ws__source_and_metrics_port_come_from_the_env_file(
    environment: Callable[[ServiceName], None],
    redis_sync: redis.Redis,
    keys: KeySpace,
    tmp_path: Path,
) -> None:
    """The review's repro: WS_SOURCE=synthetic and METRICS_PORT in the file; ws used to replay
    its bundled file and serve no /metrics."""
    environment(ServiceName.WS)
    port = free_port()
    env_file = tmp_path / "ws.env"
    env_file.write_text(
        f"WS_SOURCE=synthetic\nWS_SYNTHETIC_RATE=50\nMETRICS_PORT={port}\nMETRICS_ADDR=127.0.0.1\n",
        encoding="utf-8",
    )
    async with running(ServiceName.WS, env_file) as task:
        positions = await until(
            task, lambda: redis_sync.hkeys(keys.source_positions()), "saved source position"
        )
        assert [p.decode().split(":")[0] for p in positions] == ["synthetic"]
        text = await asyncio.to_thread(scrape, port)
        assert 'service="ws"' in text


async def test_signal__strategy_settings_come_from_the_env_file(
    environment: Callable[[ServiceName], None],
    redis_sync: redis.Redis,
    keys: KeySpace,
    tmp_path: Path,
) -> None:
    """SIGNAL_WINDOW=2 in the file: two trades are a full window (the default, 20, fires nothing)."""
    environment(ServiceName.SIGNAL)
    env_file = tmp_path / "signal.env"
    env_file.write_text(
        f"{PYDANTIC_STRICT}SIGNAL_WINDOW=2\nSIGNAL_THRESHOLD_BPS=10\nSIGNAL_COOLDOWN=0\n", encoding="utf-8"
    )
    trade = VALID_MESSAGES[Topic.MARKET_DATA]
    for i, price in enumerate((100.0, 101.0)):
        values = {k: v for k, v in trade.items() if k != "api_version"}
        _publish(redis_sync, keys, Topic.MARKET_DATA, {**values, "price": price, "timestamp": SAMPLE_TS + i})
    async with running(ServiceName.SIGNAL, env_file) as task:
        signals = await until(task, lambda: stream_values(redis_sync, keys, Topic.SIGNALS), "signal")
    assert [(s["side"], s["reason"]) for s in signals] == [("BUY", "momentum +100.0bps over 2 trades")]


async def test_risk__limits_come_from_the_env_file(
    environment: Callable[[ServiceName], None],
    redis_sync: redis.Redis,
    redis_async: aioredis.Redis,
    keys: KeySpace,
    tmp_path: Path,
) -> None:
    """RISK_KILL_SWITCH=true in the file: the one signal is rejected, no order goes out."""
    environment(ServiceName.RISK)
    env_file = tmp_path / "risk.env"
    env_file.write_text(f"{PYDANTIC_STRICT}RISK_KILL_SWITCH=true\n", encoding="utf-8")
    signal = {k: v for k, v in VALID_MESSAGES[Topic.SIGNALS].items() if k != "api_version"}
    _publish(redis_sync, keys, Topic.SIGNALS, signal)
    async with running(ServiceName.RISK, env_file) as task:
        # Decided once the group has nothing pending and nothing unread: acked after its outputs.
        await until(task, lambda: _consumed(redis_sync, keys, Topic.SIGNALS), "signal consumed")
    assert stream_values(redis_sync, keys, Topic.ORDERS) == []


async def test_execution__venue_settings_come_from_the_env_file(
    environment: Callable[[ServiceName], None],
    redis_sync: redis.Redis,
    keys: KeySpace,
    tmp_path: Path,
) -> None:
    """EXECUTION_MIN_NOTIONAL in the file: an order the default (10) fills is rejected as too small."""
    environment(ServiceName.EXECUTION)
    env_file = tmp_path / "execution.env"
    env_file.write_text(f"{PYDANTIC_STRICT}EXECUTION_MIN_NOTIONAL=1000000\n", encoding="utf-8")
    order = {k: v for k, v in VALID_MESSAGES[Topic.ORDERS].items() if k != "api_version"}
    _publish(redis_sync, keys, Topic.ORDERS, order)  # 0.01 at 87,000: 870 of notional
    async with running(ServiceName.EXECUTION, env_file) as task:
        results = await until(task, lambda: stream_values(redis_sync, keys, Topic.ORDER_RESULTS), "result")
    assert [(r["order_id"], r["status"]) for r in results] == [("ord-1", "REJECTED")]


def _consumed(client: redis.Redis, keys: KeySpace, topic: Topic) -> bool:
    groups = client.xinfo_groups(keys.stream(topic)) if client.exists(keys.stream(topic)) else []
    return bool(groups) and all(g["pending"] == 0 and g.get("lag") == 0 for g in groups)
