"""Fenced ownership (issue 16): an instance paused past its lease takes, handles, publishes
and acknowledges nothing of the partitions it lost; the trades stay those of the baseline.

Real ``cdb service signal`` and ``cdb service risk`` processes, two of each, 4 partitions,
leases of 1 s, on a redis-server of the test's own; the input (trades_small) is published
in paced batches by an in-process ws. The paused run freezes one signal and one risk
process (SIGSTOP) for 6 s, longer than the lease and than redis-py's socket timeout, then
resumes them. Signals and orders are compared by content with a baseline at the same
partition count without a pause.

Whether a frozen process re-sends a read after resuming depends on where it froze; in
4 runs against the code before fencing this scenario happened to end equal too, so the
mechanism itself (a stale owner's re-sent read, claim or ack is refused by the server) is
pinned deterministically in ``tests/test_fence_redis.py``; this test is the end-to-end check
that fencing costs no trades and that the frozen processes rejoin.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from core.topics import KeySpace, ServiceName, Topic
from services.ws.service import WsService
from tests.fence_helpers import (
    contents,
    differences,
    procs,
    publish_paced,
    wait_idle,
    wait_owners,
    ws_context,
)
from tests.scaling_helpers import TRADES
from tests.support.servers import ThrowawayRedis

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PARTITIONS = 4
SCALED = (ServiceName.SIGNAL, ServiceName.RISK)
PAUSE_S = 6.0


@pytest.fixture
async def server() -> AsyncIterator[ThrowawayRedis]:
    redis_server = ThrowawayRedis().start()
    try:
        yield redis_server
    finally:
        redis_server.close()


async def _pipeline(server: ThrowawayRedis, workdir: Path, *, pause: bool) -> dict[str, Any]:
    """One run; returns the signals and orders by id, and what the pause did."""
    keys = KeySpace(f"fence:{uuid.uuid4().hex[:8]}:", PARTITIONS)
    client = aioredis.Redis.from_url(server.url)
    facts: dict[str, Any] = {}
    try:
        ws = WsService(ws_context(client, keys, server.url), batch_size=20)
        with procs(server.url, keys, workdir) as running:
            for service in SCALED:
                for n in (1, 2):
                    running.start(service, f"{service.value}-{n}")
            for service in SCALED:
                # Both instances own partitions before the first trade.
                await wait_owners(client, keys, service, lambda o: len(set(o)) == 2 and None not in o)

            async def maybe_pause(published: int) -> None:
                if not pause or "paused_at" in facts or published < len(TRADES) // 4:
                    return
                for service in SCALED:
                    running.pause(f"{service.value}-2")
                facts["paused_at"] = time.monotonic()
                for service in SCALED:
                    facts[f"{service.value}_takeover_s"] = await wait_owners(
                        client, keys, service, lambda o, s=service: o == [f"{s.value}-1"] * PARTITIONS
                    )
                await asyncio.sleep(max(0.0, facts["paused_at"] + PAUSE_S - time.monotonic()))
                resumed = time.monotonic()
                for service in SCALED:
                    running.resume(f"{service.value}-2")
                for service in SCALED:
                    facts[f"{service.value}_rejoin_s"] = await wait_owners(
                        client, keys, service, lambda o: len(set(o)) == 2 and None not in o
                    )
                facts["rejoined_after_resume_s"] = time.monotonic() - resumed

            await publish_paced(ws, TRADES, batch=4, gap_s=0.1, after_batch=maybe_pause)
            await wait_idle(client, keys, SCALED, timeout_s=60)
            facts["logs"] = {i: running.log(i) for i in list(running.procs)}
        facts["signals"] = await contents(client, keys, Topic.SIGNALS, "signal_id")
        facts["orders"] = await contents(client, keys, Topic.ORDERS, "order_id")
        return facts
    finally:
        await client.aclose()


async def test_signal_and_risk_paused_past_the_lease__trade_like_the_baseline(
    server: ThrowawayRedis, tmp_path: Path
) -> None:
    (tmp_path / "baseline").mkdir()
    (tmp_path / "paused").mkdir()
    baseline = await _pipeline(server, tmp_path / "baseline", pause=False)
    paused = await _pipeline(server, tmp_path / "paused", pause=True)
    print({k: v for k, v in paused.items() if k.endswith("_s")})
    assert len(baseline["signals"]) > 5
    assert len(baseline["orders"]) > 2
    assert differences(paused["signals"], baseline["signals"]) == {
        "missing": [],
        "extra": [],
        "differing": [],
    }
    assert differences(paused["orders"], baseline["orders"]) == {"missing": [], "extra": [], "differing": []}
    assert paused["signals"] == baseline["signals"]
    assert paused["orders"] == baseline["orders"]
    # The paused instances noticed: their workers ended on a refused read/ack or a lost lease.
    assert (
        "partition.lost" in paused["logs"]["signal-2"]
        or "partition.worker_ended" in paused["logs"]["signal-2"]
    )
