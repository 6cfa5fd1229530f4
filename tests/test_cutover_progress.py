"""``cdb cutover check --window N`` says what it waits for and what it has seen meanwhile."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis

from cdb.cli.cutover_progress import seen_text
from core.status import STOPPED, LiveState
from core.topics import KeySpace, ServiceName
from core.utils.clock import now_ms
from tests.ops_helpers import cdb, report_state, service_settings


def _state(instance: str, defaults: int, mismatches: int, started: int = 1) -> LiveState:
    counts = {"defaults_filled": defaults, "shadow_mismatches": mismatches}
    return LiveState(
        "signal", instance, "pydantic", "lenient", True, "t", started, counts=counts, reported_ms=now_ms()
    )


def test_seen_text__counts_growth_since_the_window_began_and_restarts_from_zero() -> None:
    first = [_state("s1", 10, 0), _state("s2", 5, 1)]
    now = [_state("s1", 14, 2), _state("s2", 3, 0, started=99)]  # s2 restarted: its 3 are all new
    text = seen_text(first, now)
    assert "2 live instance(s) (signal)" in text
    assert "defaults filled +7" in text
    assert "shadow mismatches +2" in text


def test_seen_text__stopped_and_stale_instances_are_not_counted_live_but_their_growth_is() -> None:
    first = [_state("s1", 0, 0), _state("s2", 0, 0), _state("s3", 0, 0)]
    stopped = _state("s2", 4, 0)
    stopped.state = STOPPED
    stale = _state("s3", 1, 0)
    stale.reported_ms = now_ms() - 600_000
    text = seen_text(first, [_state("s1", 2, 0), stopped, stale])
    assert "1 live instance(s) (signal)" in text
    assert "defaults filled +7" in text


@pytest.mark.integration
async def test_cdb_cutover_check__window_shows_progress_and_what_it_saw(
    redis_async: aioredis.Redis, redis_url: str, keys: KeySpace
) -> None:
    await report_state(redis_async, service_settings(ServiceName.SIGNAL, keys, "signal-1"))
    args = ("cutover", "check", "--window", "1.5", "--redis-url", redis_url, "--prefix", keys.prefix)
    result = await asyncio.to_thread(cdb, *args)
    assert result.exit_code == 1  # NO-GO: three services are missing
    assert "window" in result.stderr
    assert "1 live instance(s) (signal)" in result.stderr
    assert "NO-GO" in result.stdout
