"""The ``mixed_pipeline`` fixture (harness.testing) as engineers use it in their own mixed-version tests."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from core.topics import ServiceName, Topic
from harness.matrix import Mix
from harness.testing import MixedPipeline, assert_same_trades
from tests.matrix_helpers import reworded_signals

pytestmark = pytest.mark.integration


async def test_mixed_pipeline__strict_risk_behind_pydantic_signal_trades_like_legacy(
    mixed_pipeline: MixedPipeline,
) -> None:
    legacy = await mixed_pipeline()  # every service legacy
    mixed = await mixed_pipeline("signal=pydantic,risk=strict")
    assert_same_trades(mixed, legacy)
    assert mixed.dead_letters[Topic.SIGNALS] == []


async def test_mixed_pipeline__returns_published_stored_and_dead_lettered_per_topic(
    mixed_pipeline: MixedPipeline, pg_database: str
) -> None:
    run = await mixed_pipeline("PPSL", database_url=pg_database)  # execution legacy behind strict risk: fine
    assert len(run.published[Topic.MARKET_DATA]) == 400
    assert {m["api_version"] for m in run.published[Topic.ORDERS]} == {"v1.0"}
    assert [r["order_id"] for r in run.stored] == sorted(
        r["order_id"] for r in run.published[Topic.ORDER_RESULTS]
    )
    assert all(letters == [] for letters in run.dead_letters.values())
    assert run.result.services[ServiceName.RISK.value].profile == "strict"


async def test_mixed_pipeline__dead_letters_carry_their_errors(mixed_pipeline: MixedPipeline) -> None:
    run = await mixed_pipeline(Mix.parse("ws=legacy,signal=strict"))
    letters = run.dead_letters[Topic.MARKET_DATA]
    assert len(letters) == len(run.published[Topic.MARKET_DATA]) == 400
    assert letters[0].reason == "missing"
    assert letters[0].errors[0]["loc"] == ["api_version"]
    assert run.published[Topic.SIGNALS] == []


async def test_mixed_pipeline__under_a_fault_still_trades_like_legacy(mixed_pipeline: MixedPipeline) -> None:
    legacy = await mixed_pipeline()
    faulted = await mixed_pipeline("LPLP", faults=["consumer-restart"])
    assert_same_trades(faulted, legacy)


async def test_mixed_pipeline__cleanup_removes_every_key_of_its_runs(
    cdb_redis_url: str, redis_async: aioredis.Redis
) -> None:
    pipeline = MixedPipeline(cdb_redis_url)
    run = await pipeline("PLPL")
    assert run.workspace is not None
    pattern = run.workspace.keys.all_keys_pattern()
    assert [k async for k in redis_async.scan_iter(match=pattern)]
    await pipeline.cleanup()
    assert [k async for k in redis_async.scan_iter(match=pattern)] == []


async def test_assert_same_trades__fails_with_the_differences(mixed_pipeline: MixedPipeline) -> None:
    legacy = await mixed_pipeline()
    starved = await mixed_pipeline("LSSS")
    n = len({r["order_id"] for r in legacy.order_results})  # strict readers starve: every one missing
    assert n > 0
    with pytest.raises(AssertionError, match=f"order results: {n} of {n} missing"):
        assert_same_trades(starved, legacy)


async def test_assert_same_trades__a_signal_that_differs_fails_though_every_order_is_the_same(
    mixed_pipeline: MixedPipeline,
) -> None:
    """Signals and orders are compared too, field by field, as `cdb matrix` compares them."""
    legacy = await mixed_pipeline()
    reworded = await mixed_pipeline("PPPP", codec_factory=reworded_signals)
    assert [r["order_id"] for r in reworded.order_results] == [r["order_id"] for r in legacy.order_results]
    with pytest.raises(AssertionError, match=r"signals: sig-.* differs: reason='reworded'"):
        assert_same_trades(reworded, legacy)
