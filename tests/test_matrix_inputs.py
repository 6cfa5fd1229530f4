"""The matrix's ``mixed`` input set: legacy-shaped, timestamp-less and malformed messages mixed into
the trades. Expectations stated per mix, each injected kind checked against every codec, and the
matrix run on the real Redis and PostgreSQL: mixes without a strict consumer equal the baseline,
strict ones dead-letter exactly the legacy-shaped messages of their topic."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given

from core.codec import Codec
from core.errors import ContractError
from core.logging import configure_logging
from core.topics import ServiceName, Topic
from harness.matrix import (
    Fault,
    InputSet,
    MatrixConfig,
    MatrixReport,
    Mix,
    Outcome,
    Variant,
    expected_outcome,
    inputs_expectation,
    lenient_mixes,
    run_matrix,
    strict_mixes,
)
from harness.matrix.input_verdict import mix_signals
from harness.matrix.inputs import (
    INJECTED_ORDER_PREFIX,
    LEGACY_ORDERS,
    Kind,
    injected_entries,
)
from services.ws.replay import BUNDLED_TRADES_SMALL
from tests.matrix_cases import CODECS, mixes
from tests.matrix_helpers import clock_filled_market_data
from tests.ops_helpers import cdb

LEGACY_KINDS = {Kind.LEGACY_MARKET_DATA: "signal", Kind.LEGACY_SIGNAL: "risk", Kind.LEGACY_ORDER: "execution"}


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """`cdb matrix` points the JSON logs at CliRunner's stderr, closed after the call: point
    them back at the real stderr so later tests do not log into a closed file."""
    yield
    configure_logging()


@given(mixes)
def test_inputs_expectation__legacy_shaped_refused_exactly_by_a_strict_consumer(mix: Mix) -> None:
    expectation = inputs_expectation(mix)
    for kind, consumer in LEGACY_KINDS.items():
        strict = mix.variant(ServiceName(consumer)) is Variant.STRICT
        assert expectation.accepts(kind) is not strict
    assert not expectation.accepts(Kind.NO_TIMESTAMP)
    assert not expectation.accepts(Kind.MALFORMED)


@given(mixes)
def test_expected_outcome__mixed_inputs_keep_the_outcome_and_state_the_extra(mix: Mix) -> None:
    clean, mixed = expected_outcome(mix), expected_outcome(mix, InputSet.MIXED)
    assert (mixed.outcome, mixed.topic, mixed.consumer) == (clean.outcome, clean.topic, clean.consumer)
    assert clean.inputs is None
    assert mixed.inputs == inputs_expectation(mix)
    assert mixed.reason.startswith(clean.reason)
    assert "timestamp-less market data and malformed entries dead-lettered on every path" in mixed.reason


def _decodes(codec: Codec, topic: Topic, fields: Any) -> bool:
    # As a consumer reads it: with its stream entry id (the lenient profile fills a signal's
    # or order's missing time from it, never from a clock).
    try:
        codec.from_fields(topic, fields, entry_id="1767225600000-0")
    except ContractError:
        return False
    return True


@pytest.mark.parametrize("codec", list(CODECS))
@pytest.mark.parametrize("kind", list(LEGACY_KINDS))
def test_injected_legacy_shaped__read_by_legacy_and_lenient_refused_by_strict(kind: Kind, codec: str) -> None:
    entries = injected_entries(kind, 65_536)
    assert entries
    assert all(_decodes(CODECS[codec], t, f) is (codec != "pydantic-strict") for t, f in entries)


@pytest.mark.parametrize("codec", ["legacy", "pydantic-strict"])
def test_injected_market_data_without_timestamp__refused_by_legacy_and_strict(codec: str) -> None:
    entries = injected_entries(Kind.NO_TIMESTAMP, 65_536)
    assert len(entries) == 2  # missing and null
    assert not any(_decodes(CODECS[codec], t, f) for t, f in entries)


def test_injected_market_data_without_timestamp__refused_by_lenient() -> None:
    assert not any(
        _decodes(CODECS["pydantic-lenient"], t, f) for t, f in injected_entries(Kind.NO_TIMESTAMP, 65_536)
    )


@pytest.mark.parametrize("codec", list(CODECS))
def test_injected_malformed__refused_by_every_codec(codec: str) -> None:
    entries = injected_entries(Kind.MALFORMED, 65_536)
    assert {t for t, _ in entries} == {Topic.MARKET_DATA, Topic.SIGNALS, Topic.ORDERS}
    assert not any(_decodes(CODECS[codec], t, f) for t, f in entries)


async def _matrix(redis_url: str, mixes: list[Mix], **options: Any) -> MatrixReport:
    config = MatrixConfig(
        mixes=mixes,
        data=BUNDLED_TRADES_SMALL,
        redis_url=redis_url,
        environ={},
        inputs=InputSet.MIXED,
        **options,
    )
    return await run_matrix(config)


def _injected_results(rows: list[dict[str, Any]]) -> int:
    return sum(1 for r in rows if str(r["order_id"]).startswith(INJECTED_ORDER_PREFIX))


# Mixes whose signal is legacy or strict: their outcome does not depend on the lenient rule.
RULE_FREE = [Mix.parse(c) for c in ("LLPP", "LLPS", "PSPP", "SSSS", "LSSS", "SLSS", "SSLS", "LLSL")]


@pytest.mark.integration
async def test_matrix_mixed_inputs__strict_consumers_dead_letter_their_legacy_shaped_input_the_rest_matches(
    redis_url: str, pg_database: str
) -> None:
    report = await _matrix(redis_url, RULE_FREE, database_url=pg_database)
    assert report.baseline.verdict.ok, report.baseline.verdict.problems
    assert report.ok, [(r.case.mix.code, r.verdict.problems) for r in report.failures]
    baseline = report.baseline.run
    assert baseline is not None
    assert mix_signals(baseline) >= 1
    assert _injected_results(baseline.stored) == LEGACY_ORDERS
    assert baseline.result.dead_letters == {"market_data": 9, "signals": 7, "orders": 7, "order_results": 0}
    rows = {r.case.mix.code: r.run for r in report.rows}
    assert all(run is not None for run in rows.values())
    # Execution reads the injected legacy-shaped orders unless it is strict.
    assert _injected_results(rows["LLPP"].stored) == LEGACY_ORDERS  # type: ignore[union-attr]
    assert _injected_results(rows["LLPS"].stored) == 0  # type: ignore[union-attr]
    assert rows["LLPS"].result.dead_letters["orders"] == 7 + LEGACY_ORDERS  # type: ignore[union-attr]
    # A strict signal behind a Pydantic ws refuses only the injected legacy-shaped market data.
    assert mix_signals(rows["PSPP"]) == 0  # type: ignore[arg-type]
    assert rows["PSPP"].result.dead_letters["market_data"] == 9 + 24  # type: ignore[union-attr]
    assert (
        next(r for r in report.rows if r.case.mix.code == "LLSL").case.expectation.outcome
        is Outcome.DEAD_LETTERS
    )


@pytest.mark.integration
async def test_matrix_mixed_inputs__a_clock_filled_trade_time_is_a_mismatch(redis_url: str) -> None:
    report = await _matrix(redis_url, [Mix.parse("PPPP")], codec_factory=clock_filled_market_data)
    assert report.baseline.verdict.ok
    (row,) = report.rows
    assert not row.verdict.ok
    assert any("injected market_data entries not dead-lettered" in p for p in row.verdict.problems)
    assert any(p.startswith("order results:") and "missing" in p for p in row.verdict.problems)


@pytest.mark.integration
async def test_matrix_mixed_inputs__redis_restarted_mid_run__injects_every_kind_and_matches(
    redis_url: str,
) -> None:
    report = await _matrix(redis_url, [Mix.parse("PPPP")], faults=[Fault.REDIS_RESTART])
    assert report.baseline.verdict.ok, report.baseline.verdict.problems
    row = report.rows[1]
    assert row.case.fault is Fault.REDIS_RESTART
    assert row.verdict.ok, row.verdict.problems
    assert row.run is not None
    assert row.run.inputs is not None
    assert set(row.run.inputs.injected) == set(Kind)
    assert row.run.faults[0].report.facts["transport_retries"] > 0


@pytest.mark.integration
def test_cdb_matrix__inputs_mixed__every_mix_does_what_its_expectation_states(
    redis_url: str, pg_database: str
) -> None:
    result = cdb(
        "matrix",
        "--inputs",
        "mixed",
        "--data",
        str(BUNDLED_TRADES_SMALL),
        "--redis-url",
        redis_url,
        "--database-url",
        pg_database,
        "--json",
    )
    assert result.exit_code == 0, result.output
    import json

    report = json.loads(result.stdout)
    assert report["inputs"] == "mixed"
    assert report["rows_total"] == len(lenient_mixes()) + len(strict_mixes())
    assert report["rows_failed"] == 0
    for row in report["rows"]:
        assert ("mixed inputs:" in row["expected"]["reason"]) is True


def test_cdb_matrix__unknown_input_set__exits_2_naming_it(redis_url: str) -> None:
    result = cdb("matrix", "--inputs", "dirty", "--redis-url", redis_url)
    assert result.exit_code == 2
    assert "--inputs" in result.output
