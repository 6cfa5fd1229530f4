"""Checks of a run against what its mix must do with the ``mixed`` input set.

Every injected message affects only itself (:mod:`harness.matrix.inputs`), so the checks
are exact: each injected entry is dead-lettered or not exactly as stated, the signal the
legacy-shaped market data fires is there exactly when the signal service reads them, and
the injected orders' results exist exactly when execution reads them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from core.topics import Topic
from harness.matrix.inputs import (
    INJECTED_ORDER_PREFIX,
    LEGACY_ORDERS,
    MIX_SYMBOL,
    InputExpectation,
    Kind,
    MixedInputs,
    refused_by_reader,
)

if TYPE_CHECKING:
    from harness.matrix.isolated import MixRun

__all__ = [
    "baseline_input_problems",
    "drop_injected",
    "input_ids",
    "input_problems",
    "mix_signals",
    "undecodable_inputs",
]


def input_ids(run: MixRun) -> dict[Topic, list[str]]:
    """Stream ids of every injected entry per topic (none without the ``mixed`` input set)."""
    hook = run.inputs
    return {t: hook.ids(t) if hook else [] for t in Topic}


def undecodable_inputs(run: MixRun) -> dict[Topic, int]:
    """Injected entries per topic the matrix's own lenient reader (``MixRun.published``) refuses:
    the malformed ones, and the timestamp-less market data as far as that reader refuses it
    (asked, not assumed: the services' verdict on them is checked by the dead letters)."""
    hook = run.inputs
    if hook is None:
        return dict.fromkeys(Topic, 0)
    out = {t: len(hook.ids(t, (Kind.MALFORMED,))) for t in Topic}
    out[Topic.MARKET_DATA] += refused_by_reader(Kind.NO_TIMESTAMP, hook.max_bytes)
    return out


def mix_signals(run: MixRun) -> int:
    """Distinct signals the injected legacy-shaped market data fired (the injected signals excluded;
    one published twice after a Redis restart counts once)."""
    return len(
        {
            s["signal_id"]
            for s in run.published[Topic.SIGNALS]
            if s["symbol"] == MIX_SYMBOL and not str(s["signal_id"]).startswith("mix-sig-")
        }
    )


def drop_injected(rows: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Order results or rows without those of the injected orders."""
    return [r for r in rows if not str(r["order_id"]).startswith(INJECTED_ORDER_PREFIX)]


def _injected_rows(rows: Sequence[Mapping[str, Any]]) -> int:
    return sum(1 for r in rows if str(r["order_id"]).startswith(INJECTED_ORDER_PREFIX))


def input_problems(run: MixRun, baseline: MixRun, expectation: InputExpectation) -> list[str]:
    """How ``run`` treated the injected messages differently from ``expectation``."""
    hook: MixedInputs | None = run.inputs
    if hook is None:
        return ["the mixed input set was not injected"]
    problems = [f"{k.value} never injected" for k in Kind if k not in hook.injected]
    for topic in Topic:
        refused, accepted = expectation.parked_ids(hook, topic)
        parked = {x.stream_id for x in run.dead_letters[topic]}
        lost = [i for i in refused if i not in parked]
        wrong = [i for i in accepted if i in parked]
        if lost:
            problems.append(f"{len(lost)} injected {topic.value} entries not dead-lettered (e.g. {lost[0]})")
        if wrong:
            problems.append(f"{len(wrong)} injected {topic.value} entries dead-lettered though readable")
    want = mix_signals(baseline) if expectation.accepts(Kind.LEGACY_MARKET_DATA) else 0
    if mix_signals(run) != want:
        problems.append(f"{mix_signals(run)} signals from the legacy-shaped market data, expected {want}")
    rows = _injected_rows(run.stored)
    want_rows = LEGACY_ORDERS if expectation.accepts(Kind.LEGACY_ORDER) else 0
    if rows != want_rows:
        problems.append(f"{rows} results of the injected legacy-shaped orders stored, expected {want_rows}")
    return problems


def baseline_input_problems(baseline: MixRun, expectation: InputExpectation) -> list[str]:
    """The all-legacy baseline must read the legacy-shaped messages and refuse the rest,
    or the comparison cannot show anything about them."""
    problems = input_problems(baseline, baseline, expectation)
    if not mix_signals(baseline):
        problems.append("the legacy-shaped market data fired no signal: nothing to compare")
    hook = baseline.inputs
    if hook is not None:
        dead = expectation.dead_letters(hook)
        got = {t: baseline.result.dead_letters[t.value] for t in Topic}
        if got != dead:
            problems.append(f"dead letters {got}, expected those of the injected entries {dead}")
    return problems
