"""pytest plugin for mixed-version tests: run the pipeline with any flags in a few lines.

Enable it with ``pytest_plugins = ("harness.testing",)`` in a top-level conftest.py.
Then::

    async def test_strict_risk_behind_pydantic_signal__trades_like_legacy(mixed_pipeline):
        legacy = await mixed_pipeline()                       # every service legacy
        mixed = await mixed_pipeline("signal=pydantic,risk=strict")
        assert_same_trades(mixed, legacy)                     # same order results and rows
        assert mixed.dead_letters[Topic.SIGNALS] == []

Each call runs the four services on a fresh key prefix (and its own PostgreSQL
schema when ``database_url`` is given, else a SQLite file), waits until every
stage is idle and returns a :class:`~harness.matrix.MixRun`: ``published``
(per topic, decoded), ``stored`` (database rows), ``dead_letters`` (per topic,
with structured errors) and ``result`` (counts). Everything is removed after the
test. Redis: ``CDB_TEST_REDIS_URL`` (default ``redis://127.0.0.1:6379/13``);
override the ``cdb_redis_url`` fixture to choose another.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path

import pytest
import pytest_asyncio
import redis

from harness.matrix import Fault, Mix, MixRun, run_mix
from harness.matrix.verdict import business_differences, message_differences
from services.pipeline_control import CodecFactory
from services.ws.replay import BUNDLED_TRADES_SMALL, load_trades
from services.ws.trades import Trade

__all__ = ["MixedPipeline", "assert_same_trades", "cdb_redis_url", "mixed_pipeline"]

DEFAULT_TEST_REDIS_URL = "redis://127.0.0.1:6379/13"


class MixedPipeline:
    """Starts isolated pipeline runs for one test and removes them afterwards."""

    def __init__(self, redis_url: str) -> None:
        self.redis_url = redis_url
        self.runs: list[MixRun] = []

    async def __call__(
        self,
        mix: Mix | str = "",
        *,
        data: str | Path = BUNDLED_TRADES_SMALL,
        trades: Sequence[Trade] | None = None,
        database_url: str | None = None,
        faults: Sequence[Fault | str] = (),
        codec_factory: CodecFactory | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> MixRun:
        """Run ``mix`` (a :class:`Mix`, ``"signal=pydantic,..."`` or ``"LPSL"``; empty: all legacy)
        on ``trades`` (default: the trades in ``data``) until idle; see the module doc.

        ``environ`` feeds service tuning (e.g. ``SIGNAL_WINDOW``); default empty, so the
        developer's shell does not change the result. The mix's flags always win.
        """
        chosen = mix if isinstance(mix, Mix) else Mix.parse(mix) if mix else Mix()
        run = await run_mix(
            chosen,
            trades if trades is not None else load_trades(data),
            redis_url=self.redis_url,
            database_url=database_url,
            faults=[Fault(f) for f in faults],
            codec_factory=codec_factory,
            environ={} if environ is None else environ,
            keep=True,  # the test may look at Redis or the database; removed at teardown
            tag="t_",
        )
        self.runs.append(run)
        return run

    async def cleanup(self) -> None:
        """Remove every run's keys, schema and files."""
        for run in self.runs:
            if run.workspace is not None:
                await run.workspace.clean()
        self.runs.clear()


def assert_same_trades(run: MixRun, reference: MixRun) -> None:
    """Fail with the differences unless ``run`` has the signals, orders (every field but the
    envelope), order results and stored rows of ``reference``, as ``cdb matrix`` compares them."""
    differences = business_differences(run, reference) + message_differences(run, reference)
    assert not differences, "\n".join([f"{run.mix} trades differently from {reference.mix}:", *differences])


@pytest.fixture
def cdb_redis_url() -> str:
    """The real Redis the pipeline runs on; fails (never skips) when it does not answer."""
    url = os.environ.get("CDB_TEST_REDIS_URL", DEFAULT_TEST_REDIS_URL)
    client = redis.Redis.from_url(url)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.fail(f"the Redis at {url} does not answer ({exc})")
    finally:
        client.close()
    return url


@pytest_asyncio.fixture
async def mixed_pipeline(cdb_redis_url: str) -> AsyncIterator[MixedPipeline]:
    """Call it to run the pipeline with a mix of flags: ``run = await mixed_pipeline("signal=pydantic")``."""
    runner = MixedPipeline(cdb_redis_url)
    try:
        yield runner
    finally:
        await runner.cleanup()
