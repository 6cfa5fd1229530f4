"""The mixed-version matrix on the real Redis and PostgreSQL: every mix trades as all-legacy, or
fails exactly as stated; faults change nothing; a broken legacy class makes the matrix fail."""

from __future__ import annotations

import time
from typing import Any

import pytest

from core.topics import ServiceName, Topic
from harness.matrix import (
    Fault,
    MatrixConfig,
    MatrixReport,
    Mix,
    Outcome,
    business_results,
    lenient_mixes,
    run_matrix,
    strict_mixes,
)
from services.pipeline_control import CodecFactory
from services.ws.replay import BUNDLED_TRADES_SMALL
from tests.matrix_helpers import broken_legacy_execution, reworded_signals, unsimulated_results

pytestmark = pytest.mark.integration


async def _matrix(redis_url: str, mixes: list[Mix], **options: Any) -> MatrixReport:
    config = MatrixConfig(
        mixes=mixes,
        data=BUNDLED_TRADES_SMALL,
        redis_url=redis_url,
        environ={},
        **options,
    )
    return await run_matrix(config)


async def test_matrix__all_16_lenient_mixes_trade_exactly_like_all_legacy(
    redis_url: str, pg_database: str
) -> None:
    started = time.monotonic()
    report = await _matrix(redis_url, lenient_mixes(), database_url=pg_database)
    elapsed = time.monotonic() - started
    assert report.baseline.verdict.ok, report.baseline.verdict.problems
    assert [r.case.mix for r in report.rows] == lenient_mixes()
    assert [r.verdict.problems for r in report.rows] == [[]] * 16
    baseline = report.baseline.run
    assert baseline is not None
    want = business_results(baseline.order_results)[0]
    assert len(want) > 5
    for row in report.rows:
        assert row.run is not None
        assert business_results(row.run.order_results)[0] == want
        assert row.run.stored == baseline.stored
    assert report.ok
    assert elapsed < 60, f"the 16-mix matrix took {elapsed:.1f}s"


async def test_matrix__strict_mixes_match_or_dead_letter_every_legacy_message_as_stated(
    redis_url: str,
) -> None:
    report = await _matrix(redis_url, strict_mixes())
    assert report.ok, [r.verdict.problems for r in report.failures]
    baseline = report.baseline.run
    assert baseline is not None
    for row in report.rows:
        assert row.run is not None
        result, expectation = row.run.result, row.case.expectation
        if expectation.outcome is Outcome.MATCH:
            assert sum(result.dead_letters.values()) == 0
            assert row.run.stored == baseline.stored
            continue
        assert expectation.topic is not None
        published = baseline.result.stream_lengths[expectation.topic.value]
        assert result.dead_letters[expectation.topic.value] == result.stream_lengths[expectation.topic.value]
        assert result.dead_letters[expectation.topic.value] == published > 0
        assert "as expected" in row.verdict.summary
        assert result.order_results == []


async def test_matrix__strict_consumer_dead_letters_name_the_missing_fields(redis_url: str) -> None:
    report = await _matrix(redis_url, [Mix.parse("SLSS")])
    run = report.rows[0].run
    assert run is not None
    letters = run.dead_letters[Topic.SIGNALS]
    assert len(letters) == run.result.stream_lengths[Topic.SIGNALS.value]
    for letter in letters:
        assert letter.service == ServiceName.RISK.value
        assert letter.profile == "strict"
        assert {e["loc"][0] for e in letter.errors if e["type"] == "missing"} == {"api_version", "timestamp"}


async def test_matrix__broken_legacy_from_dict_is_reported_as_a_mismatch(redis_url: str) -> None:
    mixes = [Mix.parse("LLLL"), Mix.parse("LLLP"), Mix.parse("PPPL")]
    report = await _matrix(redis_url, mixes, codec_factory=broken_legacy_execution)
    assert not report.ok
    assert report.baseline.verdict.ok  # the reference runs on the shipped codecs
    assert [r.case.mix.code for r in report.failures] == ["LLLL", "PPPL"]  # legacy execution only
    problems = " ".join(report.failures[0].verdict.problems)
    assert "status='REJECTED' (baseline 'FILLED')" in problems
    assert report.failures[0].verdict.summary.startswith("MISMATCH")


@pytest.mark.parametrize(
    ("factory", "named"),
    [
        # Every order the same: only the signals show it.
        (reworded_signals, "signals: sig-BTC/USDT-1767225608065 differs: reason='reworded'"),
        # Every stored row the same: only the stream shows it.
        (unsimulated_results, "order results: ord-sig-BTC/USDT-1767225608065 differs: simulated=False"),
    ],
)
async def test_matrix__one_field_a_pydantic_producer_publishes_differently__is_a_mismatch_naming_it(
    redis_url: str, factory: CodecFactory, named: str
) -> None:
    report = await _matrix(redis_url, [Mix.parse("LLLL"), Mix.parse("PPPP")], codec_factory=factory)
    assert report.baseline.verdict.ok
    assert [r.case.mix.code for r in report.failures] == ["PPPP"]
    assert report.failures[0].verdict.summary.startswith(f"MISMATCH: {named}")
    assert not report.ok


async def test_matrix_fault__consumer_killed_mid_batch_and_restarted__trades_like_baseline(
    redis_url: str,
) -> None:
    report = await _matrix(redis_url, [Mix.parse("LPLP")], faults=[Fault.CONSUMER_RESTART])
    row = report.rows[1]
    assert row.case.fault is Fault.CONSUMER_RESTART
    assert row.verdict.ok, row.verdict.problems
    assert row.run is not None
    facts = row.run.faults[0].report.facts
    assert 0 < facts["handled_before_kill"] < facts["read_in_batch"] == facts["pending_at_kill"]
    # Killed mid-batch: execution stores and publishes a batch only after its last handler, so
    # nothing of it went out and the restarted instance fills every order as new, once.
    assert row.run.result.count(ServiceName.EXECUTION, "results_already_published") == 0
    assert row.run.result.count(ServiceName.EXECUTION, "duplicate_orders") == 0


async def test_matrix_fault__redis_restarted_mid_run__trades_like_baseline(redis_url: str) -> None:
    report = await _matrix(redis_url, [Mix.parse("PLPL")], faults=[Fault.REDIS_RESTART])
    row = report.rows[1]
    assert row.verdict.ok, row.verdict.problems
    assert row.run is not None
    facts = row.run.faults[0].report.facts
    assert 0 < facts["killed_after_trades"] < 400
    assert facts["transport_retries"] > 0


async def test_matrix_fault__malformed_bursts_are_all_dead_lettered_and_trades_match(redis_url: str) -> None:
    report = await _matrix(redis_url, [Mix.parse("PLPL"), Mix.parse("LPSP")], faults=[Fault.MALFORMED])
    faulted = [r for r in report.rows if r.case.fault is Fault.MALFORMED]
    assert len(faulted) == 2
    for row in faulted:
        assert row.verdict.ok, row.verdict.problems
        assert row.run is not None
        injected = row.run.faults[0].report.injected
        assert set(injected) == {Topic.MARKET_DATA, Topic.SIGNALS, Topic.ORDERS}
        for topic, ids in injected.items():
            assert row.run.result.dead_letters[topic.value] == len(ids) > 0
            assert {letter.stream_id for letter in row.run.dead_letters[topic]} == set(ids)
