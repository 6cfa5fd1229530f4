"""Several instances of a service share its partitions through leases; a killed one's partitions
move to a live one, rebuilt, and the trades stay the same (issue 10).

Every run: trades_small, 4 partitions, every default limit, leases of 1 s. The instances
run in-process as separate tasks with their own contexts and instance names; a kill cancels
one like a crash (no lease released, read entries left pending).
"""

from __future__ import annotations

import asyncio
import time

import pytest

from core.redis.leases import PartitionLeases
from core.redis.modes import RedisTarget
from core.topics import ServiceName
from services.pipeline import PipelineHook, PipelineRun
from tests.scaling_helpers import LEASE_MS, assert_same_trades, run

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SCALED = (ServiceName.SIGNAL, ServiceName.RISK)
PARTITIONS = 4


async def _owners(run: PipelineRun, service: ServiceName) -> list[str | None]:
    ctx = run.ctxs[service]
    leases = PartitionLeases(run.redis, ctx.keys, service, "probe", LEASE_MS)
    return [await leases.owner(p) for p in range(PARTITIONS)]


async def _until(run: PipelineRun, check: object, timeout_s: float = 10.0) -> float:
    """Seconds until ``check(owners by service)`` holds."""
    started = time.monotonic()
    async with asyncio.timeout(timeout_s):
        while True:
            owners = {s: await _owners(run, s) for s in SCALED}
            if check(owners):  # type: ignore[operator]
                return time.monotonic() - started
            await asyncio.sleep(0.02)


class SplitThenMaybeKill(PipelineHook):
    """After the first batch: wait until the two instances of signal and of risk own two
    partitions each. Halfway: optionally kill the second instances. Before the drain: wait
    until the first instances own every partition again (the takeover)."""

    def __init__(self, *, kill: bool) -> None:
        self.kill = kill
        self.split_seen = False
        self.killed_at: float | None = None
        self.takeover_s: float | None = None

    async def after_batch(self, run: PipelineRun, published: int, total: int) -> None:
        if not self.split_seen:

            def split(owners: dict[ServiceName, list[str | None]]) -> bool:
                return all(sorted(map(str, o)).count(f"t-{s.value}") == 2 for s, o in owners.items())

            await _until(run, split)
            self.split_seen = True
        if self.kill and self.killed_at is None and published >= total // 2:
            for service in SCALED:
                await run.kill_instance(f"t-{service.value}-2")
            self.killed_at = time.monotonic()

    async def before_drain(self, run: PipelineRun) -> None:
        if not self.kill:
            return

        def taken_over(owners: dict[ServiceName, list[str | None]]) -> bool:
            return all(o == [f"t-{s.value}"] * PARTITIONS for s, o in owners.items())

        await _until(run, taken_over)
        assert self.killed_at is not None
        self.takeover_s = time.monotonic() - self.killed_at


async def test_two_instances_of_signal_and_risk__trade_like_one(redis_url: str) -> None:
    target = RedisTarget(redis_url)
    alone = await run(target, partitions=PARTITIONS)
    hook = SplitThenMaybeKill(kill=False)
    shared = await run(
        target,
        partitions=PARTITIONS,
        instances=dict.fromkeys(SCALED, 2),
        hooks=[hook],
        ws_batch=20,
    )
    assert hook.split_seen
    assert len(alone.order_results) > 5
    assert_same_trades(shared, alone)


async def test_a_killed_instance__its_partitions_are_taken_over_and_nothing_is_lost(redis_url: str) -> None:
    target = RedisTarget(redis_url)
    alone = await run(target, partitions=PARTITIONS)
    hook = SplitThenMaybeKill(kill=True)
    survived = await run(
        target,
        partitions=PARTITIONS,
        instances=dict.fromkeys(SCALED, 2),
        hooks=[hook],
        ws_batch=20,
    )
    assert hook.split_seen
    assert hook.takeover_s is not None
    # Lease and membership expire after the TTL; the survivor's next tick (TTL/3) takes over.
    assert hook.takeover_s < 3 * LEASE_MS / 1000
    assert_same_trades(survived, alone)
    orders = [r["order_id"] for r in survived.stored_rows]
    assert len(orders) == len(set(orders)) == len(alone.stored_rows)
