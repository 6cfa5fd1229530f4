"""``cdb status`` as a terminal view: 80 columns by default, ``--wide``, ``COLUMNS``, ``--watch``."""

from __future__ import annotations

import asyncio
import re

import pytest
import redis.asyncio as aioredis

from core.status import STOPPED, LiveState, StatusReporter
from core.topics import KeySpace
from core.utils.clock import now_ms
from tests.ops_helpers import cdb

pytestmark = pytest.mark.integration

# Container-like instance names (hostname-pid) of every length an operator meets.
_INSTANCES = [
    ("ws", "7f3c9a2b1d4e-1", "legacy", None, False),
    ("signal", "signal-7f3c9a2b1d4e-12", "pydantic", "lenient", True),
    ("risk", "risk-1", "pydantic", "strict", False),
    ("execution", "execution-abcdef123456-99999", "legacy", None, False),
]


async def _report_all(redis: aioredis.Redis, keys: KeySpace, **counts: object) -> None:
    for service, instance, path, profile, shadow in _INSTANCES:
        state = LiveState(
            service,
            instance,
            path,
            profile,
            shadow,
            "test",
            started_ms=now_ms() - 3_700_000,
            counts={"messages_ok": 123_456, "validation_errors": 12, "dead_letters": 7, **counts},
        )
        await StatusReporter(redis, keys, lambda state=state: state).report_once()


def _table_lines(output: str) -> dict[str, str]:
    """The first line of each service's row, by service name."""
    services = {s for s, *_ in _INSTANCES}
    return {
        line.split()[0]: line
        for line in output.splitlines()
        if line.split()[:1] and line.split()[0] in services
    }


async def test_cdb_status__at_80_columns_every_line_fits_and_path_profile_are_whole(
    redis_async: aioredis.Redis, redis_url: str, keys: KeySpace
) -> None:
    await _report_all(redis_async, keys)
    result = await asyncio.to_thread(
        cdb, "status", "--redis-url", redis_url, "--prefix", keys.prefix, COLUMNS="80"
    )
    assert result.exit_code == 0, result.output
    assert max(len(line) for line in result.stdout.splitlines()) <= 80
    rows = _table_lines(result.stdout)
    assert set(rows) == {"ws", "signal", "risk", "execution"}
    for service, _, path, profile, shadow in _INSTANCES:
        cells = rows[service].split()
        assert path in cells, rows[service]  # whole, never "pyd…"
        assert (profile or "-") in cells, rows[service]
        assert ("on" if shadow else "off") in cells
        assert cells[-1] == "live"
    assert "…" not in result.stdout


async def test_cdb_status__at_80_columns_a_stopped_row_folds_no_instance_name(
    redis_async: aioredis.Redis, redis_url: str, keys: KeySpace
) -> None:
    # Docker-style 8-character names, hours of uptime, and one instance stopped a moment ago:
    # its "stopped 25s ago" used to take the room the names needed, folding every one of them.
    names = {"ws": "vm-24998", "signal": "vm-25631", "risk": "vm-26132", "execution": "vm-24995"}
    started = now_ms() - 3_700_000
    for service, instance in [*names.items(), ("signal", "vm-24997")]:
        state = LiveState(service, instance, "pydantic", "lenient", False, "test", started_ms=started)
        if instance == "vm-24997":
            state.state = STOPPED
        await StatusReporter(redis_async, keys, lambda state=state: state).report_once()
    result = await asyncio.to_thread(
        cdb, "status", "--redis-url", redis_url, "--prefix", keys.prefix, COLUMNS="80"
    )
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    for instance in [*names.values(), "vm-24997"]:
        assert any(instance in line.split() for line in lines), result.stdout
    assert any(line.split()[-1:] == ["stopped"] for line in lines)


async def test_cdb_status__columns_variable_is_honoured_off_a_terminal(
    redis_async: aioredis.Redis, redis_url: str, keys: KeySpace
) -> None:
    await _report_all(redis_async, keys)
    narrow = await asyncio.to_thread(
        cdb, "status", "--redis-url", redis_url, "--prefix", keys.prefix, COLUMNS="80"
    )
    wide = await asyncio.to_thread(
        cdb, "status", "--redis-url", redis_url, "--prefix", keys.prefix, COLUMNS="200"
    )
    # With room, the long instance names no longer fold onto a second line.
    assert "execution-abcdef123456-99999" not in narrow.stdout
    assert "execution-abcdef123456-99999" in wide.stdout
    assert max(len(line) for line in wide.stdout.splitlines()) > 80


async def test_cdb_status__wide_shows_every_column(
    redis_async: aioredis.Redis, redis_url: str, keys: KeySpace
) -> None:
    await _report_all(redis_async, keys, duplicate_orders=4, wire_shape={"received.market_data.legacy": 5})
    result = await asyncio.to_thread(
        cdb, "status", "--wide", "--redis-url", redis_url, "--prefix", keys.prefix, COLUMNS="260"
    )
    assert result.exit_code == 0, result.output
    header = next(line for line in result.stdout.splitlines() if line.startswith("service"))
    for column in ("partitions", "published", "defaults filled", "shadow mismatches", "ignored"):
        assert column in header
    execution = _table_lines(result.stdout)["execution"]
    assert "123456" in execution  # full numbers in the wide view, not 123k
    assert re.search(r"\b5/5\b", execution)  # legacy-shaped received / all received


async def test_cdb_status__env_file_asking_for_another_path_is_marked(
    redis_async: aioredis.Redis, redis_url: str, keys: KeySpace
) -> None:
    await _report_all(redis_async, keys, desired_path="pydantic")
    result = await asyncio.to_thread(
        cdb, "status", "--redis-url", redis_url, "--prefix", keys.prefix, COLUMNS="80"
    )
    rows = _table_lines(result.stdout)
    assert rows["ws"].split()[-1] == "recreate"  # legacy now, pydantic in its env file
    assert rows["signal"].split()[-1] == "live"
    assert "env file asks for another path" in result.stdout


async def test_cdb_status__a_stopped_instance_is_not_asked_to_be_recreated(
    redis_async: aioredis.Redis, redis_url: str, keys: KeySpace
) -> None:
    # Its replacement runs on the new path; the old one's last report still names the old path.
    state = LiveState(
        "signal",
        "sig-old",
        "legacy",
        None,
        False,
        "test",
        started_ms=now_ms() - 60_000,
        state=STOPPED,
        counts={"desired_path": "pydantic"},
    )
    await StatusReporter(redis_async, keys, lambda: state).report_once()
    result = await asyncio.to_thread(
        cdb, "status", "--redis-url", redis_url, "--prefix", keys.prefix, COLUMNS="120"
    )
    assert result.exit_code in (0, 1), result.output
    assert "stopped" in result.stdout
    assert "env file asks for another path" not in result.stdout


async def test_cdb_status__watch_redraws_with_fresh_data(
    redis_async: aioredis.Redis, redis_url: str, keys: KeySpace
) -> None:
    await _report_all(redis_async, keys)
    args = ("status", "--watch", "--interval", "0.1", "--times", "3", "--redis-url", redis_url)
    result = await asyncio.to_thread(cdb, *args, "--prefix", keys.prefix, COLUMNS="80")
    assert result.exit_code == 0, result.output
    assert result.stdout.count("refreshed ") >= 1
    assert "risk-1" in result.stdout


def test_cdb_status__watch_rides_out_an_unreachable_redis() -> None:
    args = ("status", "--watch", "--interval", "0.1", "--times", "2", "--redis-url", "redis://127.0.0.1:1/0")
    result = cdb(*args, COLUMNS="80")
    assert result.exit_code == 0, result.output
    assert "does not answer" in result.stdout
    assert "refreshed " in result.stdout
    assert "Traceback" not in result.output


async def test_cdb_status__shows_the_live_source_counters_under_the_table(
    redis_async: aioredis.Redis, redis_url: str, keys: KeySpace
) -> None:
    stats = {"reconnects": 3, "refused_symbols": 1, "bad_frames_by_reason": {"protobuf_invalid": 2}}
    await _report_all(redis_async, keys, sources={"mexc": stats})
    result = await asyncio.to_thread(
        cdb, "status", "--redis-url", redis_url, "--prefix", keys.prefix, COLUMNS="80"
    )
    assert result.exit_code == 0, result.output
    text = " ".join(result.stdout.split())  # the line may wrap at 80 columns
    assert "risk-1 source mexc: reconnects 3, refused symbols 1, bad frames 2 (protobuf_invalid=2)" in text
