"""The matrix's plan, written down before anything runs: mixes, stated expectations, malformed entries."""

from __future__ import annotations

import pytest
from hypothesis import given

from cdb.cli.demo import SAMPLES
from core.errors import ConfigError, ContractError
from core.redis import DeadLetter
from core.topics import Profile, ServiceName, Topic
from harness.matrix import (
    COMPARED,
    LEGACY_OMITS,
    STRICT_MIXES,
    Fault,
    Mix,
    Outcome,
    Variant,
    business_results,
    expected_outcome,
    judge,
    lenient_mixes,
    plan,
    strict_mixes,
)
from harness.matrix.faults import FaultHook, MalformedBurst
from harness.matrix.isolated import MixRun
from harness.matrix.malformed import BURST_TOPICS, Malformation, malformed_entries
from harness.matrix.report import COLUMNS, cells, row_dict
from harness.matrix.runner import Case, MatrixRow
from services.pipeline import PipelineResult
from tests.matrix_cases import CODECS, mixes


def test_lenient_mixes__are_the_16_legacy_pydantic_combinations_baseline_first() -> None:
    found = lenient_mixes()
    assert len(set(found)) == 16
    assert found[0] == Mix()
    assert {v for m in found for v in (m.ws, m.signal, m.risk, m.execution)} == {
        Variant.LEGACY,
        Variant.PYDANTIC,
    }


@given(mixes)
def test_mix_parse__spec_and_code_round_trip(mix: Mix) -> None:
    assert Mix.parse(str(mix)) == mix
    assert Mix.parse(mix.code) == mix
    assert Mix.parse(mix.code.lower()) == mix


def test_mix_parse__omitted_services_are_legacy_and_aliases_are_accepted() -> None:
    assert Mix.parse("signal=lenient, risk=pydantic-strict") == Mix(
        signal=Variant.PYDANTIC, risk=Variant.STRICT
    )


@pytest.mark.parametrize("text", ["", "ws", "ws=json", "broker=legacy", "LPX", "LPPLP"])
def test_mix_parse__anything_else_is_a_config_error_naming_the_option(text: str) -> None:
    with pytest.raises(ConfigError) as info:
        Mix.parse(text)
    assert info.value.variable == "--mix"


def test_mix_overrides__put_each_service_on_its_path_and_profile() -> None:
    mix = Mix.parse("LPSL")
    assert mix.overrides(ServiceName.WS)["use_pydantic_contracts"] is False
    assert mix.overrides(ServiceName.SIGNAL) == {
        "use_pydantic_contracts": True,
        "contract_profile": Profile.LENIENT,
    }
    assert mix.overrides(ServiceName.RISK) == {
        "use_pydantic_contracts": True,
        "contract_profile": Profile.STRICT,
    }


@pytest.mark.parametrize("mix", lenient_mixes(), ids=lambda m: m.code)
def test_expected_outcome__every_lenient_mix_must_match_the_baseline(mix: Mix) -> None:
    expectation = expected_outcome(mix)
    assert expectation.outcome is Outcome.MATCH
    assert expectation.reason


@pytest.mark.parametrize(
    ("code", "consumer", "producer", "topic", "missing"),
    [
        ("LSSS", ServiceName.SIGNAL, ServiceName.WS, Topic.MARKET_DATA, ("api_version",)),
        ("SLSS", ServiceName.RISK, ServiceName.SIGNAL, Topic.SIGNALS, ("api_version", "timestamp")),
        ("SSLS", ServiceName.EXECUTION, ServiceName.RISK, Topic.ORDERS, ("api_version", "timestamp")),
    ],
)
def test_expected_outcome__strict_consumer_of_a_legacy_producer_dead_letters_its_input(
    code: str, consumer: ServiceName, producer: ServiceName, topic: Topic, missing: tuple[str, ...]
) -> None:
    expectation = expected_outcome(Mix.parse(code))
    assert expectation.outcome is Outcome.DEAD_LETTERS
    assert (expectation.consumer, expectation.producer, expectation.topic) == (consumer, producer, topic)
    assert expectation.missing == missing
    assert all(field in expectation.reason for field in missing)


def test_expected_outcome__the_first_refusal_starves_everything_after_it() -> None:
    expectation = expected_outcome(Mix.parse("LSLS"))  # signal refuses ws; risk->execution never get data
    assert expectation.topic is Topic.MARKET_DATA
    assert expectation.starved == (Topic.SIGNALS, Topic.ORDERS, Topic.ORDER_RESULTS)


@given(mixes)
def test_expected_outcome__dead_letters_exactly_when_a_strict_consumer_reads_a_legacy_producer(
    mix: Mix,
) -> None:
    pairs = [
        (ServiceName.WS, ServiceName.SIGNAL),
        (ServiceName.SIGNAL, ServiceName.RISK),
        (ServiceName.RISK, ServiceName.EXECUTION),
    ]
    refused = any(mix.variant(p) is Variant.LEGACY and mix.variant(c) is Variant.STRICT for p, c in pairs)
    assert (expected_outcome(mix).outcome is Outcome.DEAD_LETTERS) == refused


def test_strict_mixes__cover_all_strict_every_single_step_and_every_legacy_producer() -> None:
    found = strict_mixes()
    assert all(mix.strict for mix in found)
    assert all(reason for _, reason in STRICT_MIXES)
    assert Mix.parse("SSSS") in found
    refused = {expected_outcome(m).consumer for m in found} - {None}
    assert refused == {ServiceName.SIGNAL, ServiceName.RISK, ServiceName.EXECUTION}
    assert sum(expected_outcome(m).outcome is Outcome.MATCH for m in found) == 4


@pytest.mark.parametrize("topic", list(Topic))
def test_legacy_omits__is_what_a_legacy_producer_leaves_out(topic: Topic) -> None:
    legacy = CODECS["legacy"]
    fields = legacy.to_fields(topic, legacy.build(topic, SAMPLES[topic]))
    assert tuple(f for f in ("api_version", "timestamp") if f not in fields) == LEGACY_OMITS[topic]


def test_plan__faults_run_only_on_mixes_that_must_match() -> None:
    cases = plan([Mix.parse("LPPL"), Mix.parse("LSSS")], [Fault.MALFORMED])
    assert [(c.mix.code, c.fault) for c in cases] == [
        ("LPPL", None),
        ("LSSS", None),
        ("LPPL", Fault.MALFORMED),
    ]


@pytest.mark.parametrize("codec", list(CODECS), ids=str)
@pytest.mark.parametrize("topic", BURST_TOPICS, ids=str)
def test_malformed_entries__every_one_is_refused_by_every_path_and_profile(topic: Topic, codec: str) -> None:
    entries = malformed_entries(topic, per_kind=1)
    assert {kind for kind, _ in entries} == set(Malformation)
    for _, fields in entries:
        with pytest.raises(ContractError):
            CODECS[codec].from_fields(topic, fields)


@pytest.mark.parametrize("topic", BURST_TOPICS, ids=str)
def test_malformed_entries__break_one_thing_of_an_otherwise_valid_message(topic: Topic) -> None:
    _, template = malformed_entries(topic, per_kind=1)[0]
    template = {**template, b"price": b"100.0"}  # undo the first breakage (bad JSON in price)
    assert CODECS["pydantic-strict"].from_fields(topic, template).message is not None


def _result(order_id: str, status: str = "FILLED", fee: float = 0.1) -> dict[str, object]:
    return {
        "order_id": order_id,
        "status": status,
        "filled_quantity": 0.01,
        "average_price": 100.0,
        "fee": fee,
        "side": "BUY",
        "symbol": "BTC/USDT",
        "reason": None,
        "simulated": True,
    }


def test_business_results__identical_redeliveries_count_once_and_disagreeing_ones_are_named() -> None:
    rows = [_result("b"), _result("a"), _result("b"), _result("c"), _result("c", fee=0.2)]
    unique, conflicts = business_results(rows)
    assert [r["order_id"] for r in unique] == ["a", "b", "c"]
    assert set(unique[0]) == set(COMPARED)
    assert conflicts == ["c"]


def _run(mix: Mix, letters: list[DeadLetter], faults: list[FaultHook]) -> MixRun:
    lengths = {t.value: 1 for t in Topic}
    result = PipelineResult(
        services={},
        stream_lengths=lengths,
        dead_letters={t.value: len(letters) if t is Topic.MARKET_DATA else 0 for t in Topic},
        order_results=[_result("a")],
        stored_rows=[],
        trades=1,
        seconds=0.0,
        quiescent=True,
    )
    dlq = {t: letters if t is Topic.MARKET_DATA else [] for t in Topic}
    undecodable = {t: 1 if letters and t is Topic.MARKET_DATA else 0 for t in Topic}
    return MixRun(mix, result, {t: [] for t in Topic}, undecodable, dlq, faults=faults)


def _letter(stream_id: str) -> DeadLetter:
    return DeadLetter(
        entry_id="1767225700000-0",
        topic=Topic.MARKET_DATA.value,
        service="signal",
        path="pydantic",
        profile="lenient",
        stream_id=stream_id,
        cause="invalid",
        reason="json_invalid",
        errors=[],
        raw=b"not json",
        time_ms=1_767_225_700_000,
        deliveries=1,
    )


def test_judge__an_entry_dead_lettered_twice_after_a_redis_restart__counts_once() -> None:
    burst = MalformedBurst()
    burst.report.injected = {Topic.MARKET_DATA: ["1-0"]}
    mix = Mix.parse("PPPP")
    baseline = _run(Mix(), [], [])
    # The letter's write met the restart and was retried: two letters, one entry.
    twice = _run(mix, [_letter("1-0"), _letter("1-0")], [burst])
    assert judge(twice, baseline, expected_outcome(mix)).problems == []
    other = _run(mix, [_letter("1-0"), _letter("2-0")], [burst])
    assert (
        "2 entries dead-lettered on market_data, expected 1"
        in judge(other, baseline, expected_outcome(mix)).problems
    )


def test_report_dead_letter_column__shows_the_entries_the_verdict_counts_and_the_letters_stored() -> None:
    burst = MalformedBurst()
    burst.report.injected = {Topic.MARKET_DATA: ["1-0"]}
    mix = Mix.parse("PPPP")
    # The letter's write met a Redis restart and was retried: two letters, one entry.
    twice = _run(mix, [_letter("1-0"), _letter("1-0")], [burst])
    verdict = judge(twice, _run(Mix(), [], []), expected_outcome(mix))
    row = row_dict(MatrixRow(Case(mix, Fault.MALFORMED, expected_outcome(mix)), twice, verdict, 0.0))
    assert verdict.ok
    assert row["dead_lettered_entries"]["market_data"] == 1  # what the verdict counted
    assert row["dead_letters"]["market_data"] == 2  # the stream's length: letters stored
    assert cells(row)[COLUMNS.index("dead-lettered entries")] == "market_data 1 (2 letters)"
