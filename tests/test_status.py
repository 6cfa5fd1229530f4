"""``cdb status`` and ``cdb health`` read what running instances report to the real Redis."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess

import pytest
import redis
import redis.asyncio as aioredis

from core.codec import build_codec
from core.redis import Publisher, connect_async
from core.redis.topology import set_topology_sync
from core.status import RUNNING, STOPPED, LiveState, StatusReporter
from core.topics import CodecPath, KeySpace, ServiceName, Topic
from core.utils.clock import FrozenClock, now_ms
from tests.ops_helpers import CDB, CLEAN_ENV, ROOT, cdb, cdb_json, live_service, service_settings
from tests.test_redis_acl_live import temporary_acl_users
from tests.transport_helpers import make_messages

pytestmark = pytest.mark.integration


def _status(redis_url: str, keys: KeySpace) -> list[dict[str, object]]:
    out = cdb_json("status", "--redis-url", redis_url, "--prefix", keys.prefix)
    return out["instances"]  # type: ignore[no-any-return]


async def _report(
    redis: aioredis.Redis, keys: KeySpace, service: str, instance: str, *, path: str = "pydantic"
) -> None:
    state = LiveState(service, instance, path, "lenient", False, "test", started_ms=now_ms())
    await StatusReporter(redis, keys, lambda: state).report_once()


async def test_cdb_status__restart_with_a_flipped_flag_shows_the_new_path_and_is_not_stale(
    redis_async: aioredis.Redis, redis_url: str, keys: KeySpace
) -> None:
    legacy = service_settings(ServiceName.SIGNAL, keys, "signal-1", use_pydantic_contracts=False)
    async with live_service(redis_async, legacy):
        [before] = await asyncio.to_thread(_status, redis_url, keys)
    assert before["path"] == "legacy"

    flipped = service_settings(ServiceName.SIGNAL, keys, "signal-1", use_pydantic_contracts=True)
    async with live_service(redis_async, flipped):
        await asyncio.sleep(0.6)  # a few report intervals: still fresh
        [after] = await asyncio.to_thread(_status, redis_url, keys)
    assert (after["service"], after["instance"]) == ("signal", "signal-1")
    assert (after["path"], after["profile"], after["stale"]) == ("pydantic", "lenient", False)
    assert after["started_ms"] > before["started_ms"]


async def test_cdb_status__counts_handled_messages_and_defaults_filled_by_field(
    redis_async: aioredis.Redis, redis_url: str, keys: KeySpace
) -> None:
    settings = service_settings(ServiceName.SIGNAL, keys, "signal-1", use_pydantic_contracts=True)
    legacy = build_codec(CodecPath.LEGACY)
    producer = Publisher(redis_async, legacy, keys=keys, service=ServiceName.WS)
    await producer.publish_many(Topic.MARKET_DATA, make_messages(legacy, Topic.MARKET_DATA, 5))
    async with live_service(redis_async, settings) as ctx:
        async with asyncio.timeout(10):
            while ctx.live_state().counts["messages_ok"] < 5:
                await asyncio.sleep(0.02)
        await asyncio.sleep(0.6)  # two report intervals: the counts have reached Redis
        [row] = await asyncio.to_thread(_status, redis_url, keys)
    assert row["handled"] == 5
    assert row["defaults_filled"] == 5
    assert row["defaults_by_field"] == {"api_version": 5}  # legacy market data carries a timestamp
    assert row["validation_errors"] == 0


async def test_cdb_status__instance_that_stopped_reporting_is_marked_stale(
    redis_async: aioredis.Redis, redis_url: str, keys: KeySpace, frozen_clock: FrozenClock
) -> None:
    await _report(redis_async, keys, "risk", "risk-1")
    frozen_clock.advance(7_000)  # more than three 2 s intervals, less than the 20 s TTL
    [row] = await asyncio.to_thread(_status, redis_url, keys)
    assert row["stale"] is True
    assert row["last_report_age_s"] == 7.0


async def test_cdb_status__table_names_path_and_marks_stale_instances(
    redis_async: aioredis.Redis, redis_url: str, keys: KeySpace, frozen_clock: FrozenClock
) -> None:
    await _report(redis_async, keys, "ws", "ws-old", path="legacy")
    frozen_clock.advance(10_000)
    await _report(redis_async, keys, "ws", "ws-new")
    result = await asyncio.to_thread(cdb, "status", "--redis-url", redis_url, "--prefix", keys.prefix)
    assert result.exit_code == 0, result.output
    lines = {line.split()[1]: line for line in result.stdout.splitlines() if line.startswith("ws ")}
    assert "legacy" in lines["ws-old"]
    assert "STALE" in lines["ws-old"]  # the age follows when the terminal is wide enough
    assert "pydantic" in lines["ws-new"]
    assert "live" in lines["ws-new"]


async def _report_partitions(
    redis: aioredis.Redis, keys: KeySpace, instance: str, owned: list[int], *, state: str = RUNNING
) -> None:
    report = LiveState("risk", instance, "pydantic", "lenient", False, "test", started_ms=now_ms())
    report.partitions, report.owned, report.state = 4, owned, state
    await StatusReporter(redis, keys, lambda: report).report_once()


def _four_partitions_with_signals(redis: redis.Redis, keys: KeySpace, counts: dict[int, int]) -> None:
    """Record 4 partitions and put ``counts[p]`` signals on risk's input partition ``p``."""
    set_topology_sync(redis, keys, 4)
    split = keys.with_partitions(4)
    for partition, count in counts.items():
        for n in range(count):
            redis.xadd(split.stream(Topic.SIGNALS, partition), {"n": str(n)})


async def test_cdb_status__partitions_no_live_instance_owns_are_named_with_what_waits_there(
    redis_async: aioredis.Redis, redis_sync: redis.Redis, redis_url: str, keys: KeySpace
) -> None:
    """Their entries are in no instance's lag: a stopped instance's partitions, not yet taken."""
    _four_partitions_with_signals(redis_sync, keys, {1: 4, 2: 3, 3: 2})
    await _report_partitions(redis_async, keys, "risk-1", [0, 1])
    await _report_partitions(redis_async, keys, "risk-2", [2, 3], state=STOPPED)
    out = await asyncio.to_thread(cdb_json, "status", "--redis-url", redis_url, "--prefix", keys.prefix)
    assert out["unowned"] == [{"service": "risk", "partitions": [2, 3], "waiting": 5}]
    result = await asyncio.to_thread(cdb, "status", "--redis-url", redis_url, "--prefix", keys.prefix)
    assert result.exit_code == 0, result.output
    assert "risk partitions 2, 3: no live owner, 5 entries waiting" in result.stdout


async def test_cdb_status__a_stale_instance_owns_nothing_and_every_partition_owned_names_none(
    redis_async: aioredis.Redis,
    redis_sync: redis.Redis,
    redis_url: str,
    keys: KeySpace,
    frozen_clock: FrozenClock,
) -> None:
    _four_partitions_with_signals(redis_sync, keys, {0: 1, 3: 2})
    await _report_partitions(redis_async, keys, "risk-1", [0, 1, 2, 3])
    out = await asyncio.to_thread(cdb_json, "status", "--redis-url", redis_url, "--prefix", keys.prefix)
    assert out["unowned"] == []
    frozen_clock.advance(7_000)  # risk-1 missed its reports: hung or gone
    await _report_partitions(redis_async, keys, "risk-2", [1])  # took partition 1 so far
    out = await asyncio.to_thread(cdb_json, "status", "--redis-url", redis_url, "--prefix", keys.prefix)
    assert out["unowned"] == [{"service": "risk", "partitions": [0, 2, 3], "waiting": 3}]


def test_cdb_status__unreachable_redis_exits_2_with_one_error_line() -> None:
    result = cdb("status", "--redis-url", "redis://127.0.0.1:1/0")
    assert result.exit_code == 2
    assert "does not answer" in result.output
    assert "Traceback" not in result.output


async def test_cdb_status__real_subprocess_prints_json_of_live_instances(
    redis_async: aioredis.Redis, redis_url: str, keys: KeySpace
) -> None:
    await _report(redis_async, keys, "execution", "exec-1")
    env = {k: v for k, v in os.environ.items() if k not in CLEAN_ENV}
    proc = await asyncio.to_thread(
        subprocess.run,
        [str(CDB), "status", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**env, "REDIS_URL": redis_url, "KEY_PREFIX": keys.prefix},
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["prefix"] == keys.prefix
    assert [(r["service"], r["instance"], r["path"]) for r in out["instances"]] == [
        ("execution", "exec-1", "pydantic")
    ]


async def test_cdb_health__fresh_state_of_this_host_exits_0(
    redis_async: aioredis.Redis, redis_url: str, keys: KeySpace
) -> None:
    await _report(redis_async, keys, "risk", f"{socket.gethostname()}-4242")
    result = await asyncio.to_thread(cdb, "health", "risk", "--redis-url", redis_url, "--prefix", keys.prefix)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("healthy: risk")


async def test_cdb_health__only_another_host_or_service_reports_exits_1(
    redis_async: aioredis.Redis, redis_url: str, keys: KeySpace
) -> None:
    await _report(redis_async, keys, "risk", "some-other-host-1")
    await _report(redis_async, keys, "signal", f"{socket.gethostname()}-1")
    result = await asyncio.to_thread(cdb, "health", "risk", "--redis-url", redis_url, "--prefix", keys.prefix)
    assert result.exit_code == 1
    assert result.stdout.strip().startswith("unhealthy: no live state of risk")
    assert len(result.stdout.strip().splitlines()) == 1


async def test_cdb_health__stale_state_exits_1(
    redis_async: aioredis.Redis, redis_url: str, keys: KeySpace, frozen_clock: FrozenClock
) -> None:
    await _report(redis_async, keys, "ws", f"{socket.gethostname()}-7")
    frozen_clock.advance(8_000)
    result = await asyncio.to_thread(cdb, "health", "ws", "--redis-url", redis_url, "--prefix", keys.prefix)
    assert result.exit_code == 1
    assert "last reported 8s ago" in result.stdout


async def test_cdb_health__instance_option_matches_exactly(
    redis_async: aioredis.Redis, redis_url: str, keys: KeySpace
) -> None:
    await _report(redis_async, keys, "signal", "signal-blue")
    base = ("health", "signal", "--redis-url", redis_url, "--prefix", keys.prefix)
    found = await asyncio.to_thread(cdb, *base, INSTANCE="signal-blue")
    missing = await asyncio.to_thread(cdb, *base, INSTANCE="signal-green")
    assert (found.exit_code, missing.exit_code) == (0, 1)


def test_cdb_health__unreachable_redis_exits_1_with_one_line() -> None:
    result = cdb("health", "ws", "--redis-url", "redis://127.0.0.1:1/0")
    assert result.exit_code == 1
    assert result.stdout.startswith("unhealthy: Redis at redis://127.0.0.1:1/0 does not answer")
    assert len(result.stdout.strip().splitlines()) == 1


async def test_cdb_health__as_the_service_acl_user_finds_its_pid_1_instance_without_scan(
    redis_sync: redis.Redis, redis_url: str, keys: KeySpace
) -> None:
    """In a container the service is PID 1 and its Redis user may GET its status keys, not SCAN."""
    with temporary_acl_users(redis_sync, keys, redis_url) as users:
        risk = connect_async(users.urls["risk"])
        try:
            await _report(risk, keys, "risk", f"{socket.gethostname()}-1")
        finally:
            await risk.aclose()
        base = ("--prefix", keys.prefix)
        found = await asyncio.to_thread(cdb, "health", "risk", "--redis-url", users.urls["risk"], *base)
        missing = await asyncio.to_thread(cdb, "health", "signal", "--redis-url", users.urls["signal"], *base)
    assert found.exit_code == 0, found.output
    assert missing.exit_code == 1
    assert missing.stdout.startswith("unhealthy: no live state of signal")
