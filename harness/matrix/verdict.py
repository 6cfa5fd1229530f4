"""Judging one mix's run against the all-legacy baseline and its stated expectation.

Order results are compared on the business fields (:data:`COMPARED`) with exact
float equality: both paths parse the same JSON numbers, so any difference is a
real one. The signals and orders a matching mix publishes are compared too, by id,
on every field but the envelope (:data:`MESSAGES`). Delivery is at least once, so a
message may appear twice on a stream after a fault; duplicates must be identical and
count once.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from core.topics import Topic
from harness.matrix.expectations import Expectation, Outcome
from harness.matrix.faults import FaultHook, MalformedBurst
from harness.matrix.input_verdict import (
    baseline_input_problems,
    drop_injected,
    input_ids,
    input_problems,
    undecodable_inputs,
)
from harness.matrix.inputs import MIX_SYMBOL, Kind
from harness.matrix.isolated import MixRun

__all__ = [
    "COMPARED",
    "MESSAGES",
    "Verdict",
    "business_differences",
    "business_results",
    "judge",
    "judge_baseline",
    "message_differences",
    "parked_entries",
]

COMPARED = (
    "order_id",
    "status",
    "filled_quantity",
    "average_price",
    "fee",
    "side",
    "symbol",
    "reason",
    "simulated",
)
"""The order-result fields every matching mix must reproduce exactly."""

MESSAGES = {Topic.SIGNALS: "signal_id", Topic.ORDERS: "order_id"}
"""The topics whose messages every matching mix must publish exactly as the baseline, by this id."""

_ENVELOPE = ("api_version", "timestamp")  # a Pydantic producer's clock time; a lenient reader fills one

_SHOWN = 3  # differences listed per check; the rest are counted


@dataclass
class Verdict:
    """Whether a run did what its expectation says, in one line and in detail."""

    ok: bool
    summary: str
    problems: list[str] = field(default_factory=list)


def business_results(rows: Sequence[Mapping[str, Any]]) -> tuple[list[dict[str, Any]], list[str]]:
    """Order results projected on :data:`COMPARED`, one per ``order_id`` (sorted), and the ids
    whose duplicates disagree."""
    return _unique([{k: row[k] for k in COMPARED} for row in rows], "order_id")


def _unique(items: Sequence[dict[str, Any]], key: str) -> tuple[list[dict[str, Any]], list[str]]:
    seen: dict[str, dict[str, Any]] = {}
    conflicts: list[str] = []
    for item in items:
        earlier = seen.setdefault(item[key], item)
        if earlier != item and item[key] not in conflicts:
            conflicts.append(item[key])
    return [seen[k] for k in sorted(seen)], conflicts


def _diff(
    name: str, got: Sequence[Mapping[str, Any]], want: Sequence[Mapping[str, Any]], key: str = "order_id"
) -> list[str]:
    if list(got) == list(want):
        return []
    got_by = {r[key]: r for r in got}
    want_by = {r[key]: r for r in want}
    problems = []
    missing = [k for k in want_by if k not in got_by]
    extra = [k for k in got_by if k not in want_by]
    if missing:
        problems.append(
            f"{name}: {len(missing)} of {len(want_by)} missing (e.g. {', '.join(missing[:_SHOWN])})"
        )
    if extra:
        problems.append(f"{name}: {len(extra)} not in the baseline (e.g. {', '.join(extra[:_SHOWN])})")
    changed = [k for k in want_by if k in got_by and got_by[k] != want_by[k]]
    for one in changed[:_SHOWN]:
        fields = [
            f"{f}={got_by[one][f]!r} (baseline {want_by[one][f]!r})"
            for f in want_by[one]
            if got_by[one].get(f) != want_by[one][f]
        ]
        problems.append(f"{name}: {one} differs: {'; '.join(fields)}")
    if len(changed) > _SHOWN:
        problems.append(f"{name}: {len(changed) - _SHOWN} more differ")
    return problems or [f"{name}: same entries in another order or repeated ({len(got)} vs {len(want)})"]


def _injected(faults: Sequence[FaultHook]) -> dict[Topic, list[str]]:
    out: dict[Topic, list[str]] = {}
    for hook in faults:
        if isinstance(hook, MalformedBurst):
            for topic, ids in hook.report.injected.items():
                out.setdefault(topic, []).extend(ids)
    return out


def _malformed_problems(run: MixRun, injected: Mapping[Topic, list[str]]) -> list[str]:
    problems = []
    extra = undecodable_inputs(run)
    for topic in Topic:
        ids = injected.get(topic, [])
        parked = {letter.stream_id for letter in run.dead_letters[topic]}
        lost = [i for i in ids if i not in parked]
        if lost:
            problems.append(f"{len(lost)} of {len(ids)} malformed {topic.value} entries not dead-lettered")
        want = len(ids) + extra[topic]
        if run.undecodable[topic] != want:
            problems.append(f"{topic.value}: {run.undecodable[topic]} undecodable entries, injected {want}")
    return problems


def judge_baseline(baseline: MixRun, expectation: Expectation | None = None) -> Verdict:
    """The baseline must drain and trade on every topic, or no comparison can show anything;
    it dead-letters nothing but what the input set must have dead-lettered."""
    result = baseline.result
    problems = [] if result.quiescent else ["the pipeline did not drain before the timeout"]
    empty = [t.value for t in Topic if not result.stream_lengths[t.value]]
    if empty:
        problems.append(f"the data produced no {', '.join(empty)}: nothing to compare")
    inputs = expectation.inputs if expectation else None
    if inputs is not None:
        problems += baseline_input_problems(baseline, inputs)
        problems += _malformed_problems(baseline, {})
    elif any(result.dead_letters.values()):
        problems.append(f"dead letters in the baseline: {result.dead_letters}")
    if problems:
        return Verdict(False, "BASELINE UNUSABLE: " + "; ".join(problems), problems)
    return Verdict(True, f"baseline: {len(result.order_results)} order results", [])


def judge(run: MixRun, baseline: MixRun, expectation: Expectation) -> Verdict:
    """Compare ``run`` with ``baseline`` under ``expectation`` (and its faults' own checks)."""
    result = run.result
    problems = [] if result.quiescent else ["the pipeline did not drain before the timeout"]
    for hook in run.faults:
        problems += hook.report.problems + hook.check(result)
    injected = _injected(run.faults)
    problems += _malformed_problems(run, injected)
    expected_dlq = Counter({t: len(ids) for t, ids in injected.items()})
    inputs = expectation.inputs
    if inputs is not None and run.inputs is not None:
        problems += input_problems(run, baseline, inputs)
        for topic, n in inputs.dead_letters(run.inputs).items():
            if topic is not expectation.topic:  # the refused topic's whole length is counted below
                expected_dlq[topic] += n
    elif inputs is not None:
        problems.append("the mixed input set was not injected")
    if expectation.outcome is Outcome.MATCH:
        problems += business_differences(
            run,
            baseline,
            compare_lengths=not run.faults and inputs is None,
            drop_injected=inputs is not None and not inputs.accepts(Kind.LEGACY_ORDER),
        )
        refuses_mix = inputs is not None and not inputs.accepts(Kind.LEGACY_MARKET_DATA)
        problems += message_differences(run, baseline, skip_symbol=MIX_SYMBOL if refuses_mix else None)
    else:
        assert expectation.topic is not None
        expected_dlq[expectation.topic] += baseline.result.stream_lengths[expectation.topic.value]
        problems += _dead_letter_problems(run, baseline, expectation, injected.get(expectation.topic, []))
    for topic in Topic:
        got = parked_entries(run, topic)
        if got != expected_dlq[topic]:
            problems.append(f"{got} entries dead-lettered on {topic.value}, expected {expected_dlq[topic]}")
    if problems:
        return Verdict(False, "MISMATCH: " + problems[0], problems)
    return Verdict(True, _success(run, expectation, injected), [])


def parked_entries(run: MixRun, topic: Topic) -> int:
    """The distinct entries of ``topic`` that ``run`` dead-lettered: what the verdict counts
    (and the table's dead-letter column shows), not the letters stored."""
    # Entries, not letters: a letter is written again when its write or ack met a Redis restart
    # (at least once, core.redis.dead_letters), and both name the entry they park.
    letters = run.dead_letters[topic]
    return len({x.stream_id for x in letters if x.stream_id}) + sum(1 for x in letters if not x.stream_id)


def business_differences(
    run: MixRun, baseline: MixRun, *, compare_lengths: bool = False, drop_injected: bool = False
) -> list[str]:
    """How ``run`` trades differently from ``baseline``: order results on :data:`COMPARED`, stored
    rows, and (``compare_lengths``) messages per topic; empty when they trade identically.
    ``drop_injected``: the baseline's results of injected legacy-shaped orders are not expected
    (a strict execution dead-letters them)."""
    got, conflicts = business_results(run.order_results)
    want, _ = business_results(baseline.order_results)
    stored = baseline.stored
    if drop_injected:
        want, stored = (
            [dict(r) for r in _without_injected(want)],
            [dict(r) for r in _without_injected(stored)],
        )
    problems = [f"order results: duplicates of {c} disagree" for c in conflicts[:_SHOWN]]
    problems += _diff("order results", got, want)
    problems += _diff("stored rows", run.stored, stored)
    if compare_lengths:
        for topic in Topic:
            n, m = run.result.stream_lengths[topic.value], baseline.result.stream_lengths[topic.value]
            if n != m:
                problems.append(f"{n} {topic.value} messages, baseline {m}")
    return problems


def message_differences(run: MixRun, baseline: MixRun, *, skip_symbol: str | None = None) -> list[str]:
    """How the messages of :data:`MESSAGES` ``run`` published differ from ``baseline``'s, field by
    field but the envelope; empty when they are the same. ``skip_symbol``: messages of that symbol
    are judged elsewhere (the ``mixed`` input set's, which a strict signal refuses)."""
    problems = []
    for topic, key in MESSAGES.items():
        got, conflicts = _messages(run, topic, key, skip_symbol)
        want, _ = _messages(baseline, topic, key, skip_symbol)
        problems += [f"{topic.value}: duplicates of {c} disagree" for c in conflicts[:_SHOWN]]
        problems += _diff(topic.value, got, want, key)
    return problems


def _messages(
    run: MixRun, topic: Topic, key: str, skip_symbol: str | None
) -> tuple[list[dict[str, Any]], list[str]]:
    items = [
        {k: v for k, v in message.items() if k not in _ENVELOPE}
        for message in run.published[topic]
        if message["symbol"] != skip_symbol
    ]
    return _unique(items, key)


def _without_injected(rows: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return drop_injected(rows)


def _dead_letter_problems(
    run: MixRun, baseline: MixRun, exp: Expectation, injected: Sequence[str]
) -> list[str]:
    assert exp.topic is not None
    lengths, problems = run.result.stream_lengths, []
    published = lengths[exp.topic.value] - len(injected)
    want = baseline.result.stream_lengths[exp.topic.value]
    if published != want:
        problems.append(f"{exp.producer} published {published} {exp.topic.value}, baseline {want}")
    mixed_in = input_ids(run)
    skip = set(injected) | set(mixed_in[exp.topic])
    for letter in (x for x in run.dead_letters[exp.topic] if x.stream_id not in skip):
        named = {str(e["loc"][0]) for e in letter.errors if e.get("type") == "missing" and e.get("loc")}
        if letter.service != str(exp.consumer) or not set(exp.missing) <= named:
            problems.append(
                f"dead letter {letter.stream_id} by {letter.service}: {letter.reason} {named or ''} "
                f"(expected {exp.consumer} naming missing {', '.join(exp.missing)})"
            )
            break
    # Injected entries, and the results of injected orders an accepting execution filled, are not
    # what the refusing consumer starves (input_problems judges them).
    derived = {Topic.ORDER_RESULTS: len(run.order_results) - len(drop_injected(run.order_results))}
    for topic in exp.starved:
        published = lengths[topic.value] - len(mixed_in[topic]) - derived.get(topic, 0)
        if published:
            problems.append(f"{published} {topic.value} published after the refusing consumer")
    pipeline_rows = drop_injected(run.stored)  # injected orders' results: judged by input_problems
    if pipeline_rows:
        problems.append(f"{len(pipeline_rows)} rows stored though no order should reach execution")
    return problems


def _success(run: MixRun, exp: Expectation, injected: Mapping[Topic, list[str]]) -> str:
    if exp.outcome is Outcome.DEAD_LETTERS:
        assert exp.topic is not None
        n = run.result.stream_lengths[exp.topic.value] - len(injected.get(exp.topic, []))
        text = f"dead-letters {n} legacy {exp.topic.value} messages, as expected"
    else:
        text = f"matches all-legacy ({len(business_results(run.order_results)[0])} order results)"
    if injected:
        text += f"; {sum(len(v) for v in injected.values())} malformed entries dead-lettered"
    return text
