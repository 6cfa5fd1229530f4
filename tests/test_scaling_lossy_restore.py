"""Lost writes detected (issue 16): the Redis server restarts mid-run from a snapshot older
than what the services already handled, as an asynchronous fail-over can; the pipeline ends
with the baseline's trades.

A throwaway redis-server (no AOF, DEBUG enabled) takes a snapshot (``SAVE``) a third of the
way through trades_small; at two thirds, once every stage has handled and acknowledged what
it read, it reloads that snapshot (``DEBUG RELOAD NOSAVE``): every stream, group position,
lease and publish marker goes back, while execution's database keeps the fills it stored
and marked published. ws then sends again the trades the server lost (what a producer
without replica acknowledgement must do: docs/scaling.md). Signal and risk notice that
their groups went back behind what they had taken (the fenced read compares) and rebuild
from what the streams hold; execution finds its "published" mark pointing at a result the
stream no longer has and publishes it again.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from core.redis.modes import RedisTarget
from core.topics import ServiceName, Topic
from services.pipeline import PipelineHook, PipelineRun, wait_quiescent
from services.ws.service import WsService
from tests.scaling_helpers import TRADES, assert_same_trades, run
from tests.support.servers import ThrowawayRedis

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PARTITIONS = 2


@pytest.fixture
def snapshot_server() -> Iterator[ThrowawayRedis]:
    server = ThrowawayRedis(extra_args=["--appendonly", "no", "--enable-debug-command", "yes"]).start()
    try:
        yield server
    finally:
        server.close()


class LossyRestore(PipelineHook):
    """SAVE at a third, reload that snapshot at two thirds, then ws re-sends what was lost."""

    def __init__(self) -> None:
        self.saved_at: int | None = None
        self.lost_trades = 0
        self.lost_entries = 0
        self.restored_at: float | None = None
        self.resume_s: float | None = None

    async def after_batch(self, run: PipelineRun, published: int, total: int) -> None:
        if self.saved_at is None and published >= total // 3:
            await run.redis.execute_command("SAVE")
            self.saved_at = published
        elif self.saved_at is not None and self.restored_at is None and published >= 2 * total // 3:
            assert await wait_quiescent(run.redis, run.keys, timeout_s=60)
            before = await self._entries(run)
            await run.redis.execute_command("DEBUG", "RELOAD", "NOSAVE")
            self.restored_at = time.monotonic()
            self.lost_entries = before - await self._entries(run)
            self.lost_trades = published - self.saved_at
            ws = WsService(run.ctxs[ServiceName.WS], batch_size=20)
            await ws.publish_trades(TRADES[self.saved_at : published])

    async def before_drain(self, run: PipelineRun) -> None:
        assert await wait_quiescent(run.redis, run.keys, timeout_s=60)
        assert self.restored_at is not None
        self.resume_s = time.monotonic() - self.restored_at

    @staticmethod
    async def _entries(run: PipelineRun) -> int:
        return sum([await run.redis.xlen(s) for t in Topic for s in run.keys.streams(t)])


async def test_restore_from_an_older_snapshot_mid_run__trades_equal_the_baseline(
    snapshot_server: ThrowawayRedis,
) -> None:
    target = RedisTarget(snapshot_server.url)
    baseline = await run(target, partitions=PARTITIONS)
    hook = LossyRestore()
    restored = await run(target, partitions=PARTITIONS, hooks=[hook], ws_batch=20)
    print({"lost_trades": hook.lost_trades, "lost_entries": hook.lost_entries, "resume_s": hook.resume_s})
    assert hook.lost_trades > 0
    assert hook.lost_entries > hook.lost_trades  # signals, orders and results were lost too
    assert len(baseline.order_results) > 5
    assert_same_trades(restored, baseline)
