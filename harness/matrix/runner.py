"""Running the matrix: the baseline first, then every case, a few at a time, each isolated.

A case is a mix, optionally under one fault. Faults are applied only to mixes that
must match the baseline (a fault on a mix that dead-letters everything proves
nothing). A case that raises is a failed row, not a crashed matrix; only a failing
baseline stops the run, since nothing can be compared without it.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from core.redis.modes import RedisTarget
from harness.matrix.expectations import Expectation, Outcome, expected_outcome
from harness.matrix.faults import Fault
from harness.matrix.inputs import InputSet
from harness.matrix.isolated import MixRun, run_mix
from harness.matrix.mixes import ALL_LEGACY, Mix
from harness.matrix.verdict import Verdict, judge, judge_baseline
from services.pipeline_control import CodecFactory
from services.ws.replay import load_trades
from services.ws.trades import Trade

__all__ = ["Case", "MatrixConfig", "MatrixReport", "MatrixRow", "plan", "run_matrix"]


@dataclass(frozen=True, slots=True)
class Case:
    """One row of the matrix: a mix, maybe a fault, and what it must do."""

    mix: Mix
    fault: Fault | None
    expectation: Expectation


@dataclass(frozen=True)
class MatrixConfig:
    """What to run and where.

    ``codec_factory`` gives the codecs of the mixes under test (e.g. a candidate legacy
    class); the baseline always runs on the shipped codecs, so a broken candidate shows
    as a mismatch instead of silently becoming the reference.
    """

    mixes: Sequence[Mix]
    data: Path
    redis_url: str
    database_url: str | None = None
    faults: Sequence[Fault] = ()
    keep: bool = False
    concurrency: int = 4
    environ: Mapping[str, str] | None = None
    codec_factory: CodecFactory | None = None
    timeout_s: float = 60.0
    redis_target: RedisTarget | None = None
    """How to reach ``redis_url`` (REDIS_MODE, Sentinels); ``None``: the mode is detected."""
    inputs: InputSet = InputSet.CLEAN
    """The input set of every run, the baseline's too (:mod:`harness.matrix.inputs`)."""


@dataclass
class MatrixRow:
    """A finished case: its run (``None`` if it raised), verdict and wall time."""

    case: Case
    run: MixRun | None
    verdict: Verdict
    seconds: float


@dataclass
class MatrixReport:
    """Every row of a matrix run, the baseline first."""

    baseline: MatrixRow
    rows: list[MatrixRow]
    data: str
    trades: int
    seconds: float
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    inputs: str = InputSet.CLEAN.value
    """The input set every run had (:class:`~harness.matrix.inputs.InputSet`)."""

    @property
    def ok(self) -> bool:
        """True when the baseline is usable and every row did what it must."""
        return self.baseline.verdict.ok and all(r.verdict.ok for r in self.rows)

    @property
    def failures(self) -> list[MatrixRow]:
        """The rows that did not do what they must."""
        return [r for r in self.rows if not r.verdict.ok]


def plan(mixes: Sequence[Mix], faults: Sequence[Fault] = (), inputs: InputSet = InputSet.CLEAN) -> list[Case]:
    """Every mix without a fault, then each fault on every mix that must match."""
    unique = list(dict.fromkeys(mixes))
    cases = [Case(mix, None, expected_outcome(mix, inputs)) for mix in unique]
    for fault in dict.fromkeys(faults):
        cases += [
            Case(mix, fault, expected_outcome(mix, inputs))
            for mix in unique
            if expected_outcome(mix).outcome is Outcome.MATCH
        ]
    return cases


async def run_matrix(
    config: MatrixConfig,
    *,
    on_start: Callable[[int], None] | None = None,
    on_row: Callable[[MatrixRow], None] | None = None,
) -> MatrixReport:
    """Run the baseline, then every case of :func:`plan` (``concurrency`` at a time)."""
    started = time.monotonic()
    trades = load_trades(config.data)
    cases = plan(config.mixes, config.faults, config.inputs)
    if on_start:
        on_start(len(cases) + 1)
    t0 = time.monotonic()
    baseline_run = await run_mix(
        ALL_LEGACY,
        trades,
        redis_url=config.redis_url,
        database_url=config.database_url,
        environ=config.environ,
        keep=config.keep,
        tag="base_",
        timeout_s=config.timeout_s,
        redis_target=config.redis_target,
        inputs=config.inputs,
    )
    base_expectation = expected_outcome(ALL_LEGACY, config.inputs)
    baseline = MatrixRow(
        Case(ALL_LEGACY, None, base_expectation),
        baseline_run,
        judge_baseline(baseline_run, base_expectation),
        time.monotonic() - t0,
    )
    if on_row:
        on_row(baseline)
    rows: list[MatrixRow] = []
    if baseline.verdict.ok:
        gate = asyncio.Semaphore(max(1, config.concurrency))

        async def one(case: Case) -> MatrixRow:
            async with gate:
                row = await _run_case(case, baseline_run, trades, config)
            if on_row:
                on_row(row)
            return row

        rows = list(await asyncio.gather(*(one(c) for c in cases)))
        _stop_kept_servers(rows)
    return MatrixReport(
        baseline, rows, str(config.data), len(trades), time.monotonic() - started, inputs=config.inputs.value
    )


async def _run_case(case: Case, baseline: MixRun, trades: Sequence[Trade], config: MatrixConfig) -> MatrixRow:
    t0 = time.monotonic()
    try:
        run = await run_mix(
            case.mix,
            trades,
            redis_url=config.redis_url,
            database_url=config.database_url,
            faults=(case.fault,) if case.fault else (),
            codec_factory=config.codec_factory,
            environ=config.environ,
            keep=config.keep,
            timeout_s=config.timeout_s,
            redis_target=config.redis_target,
            inputs=config.inputs,
        )
    except Exception as exc:  # a mix that crashes the pipeline is a finding, shown in its row
        message = f"CRASHED: {type(exc).__name__}: {exc}"
        return MatrixRow(case, None, Verdict(False, message, [message]), time.monotonic() - t0)
    return MatrixRow(case, run, judge(run, baseline, case.expectation), time.monotonic() - t0)


def _stop_kept_servers(rows: Sequence[MatrixRow]) -> None:
    # A kept run on its own throwaway Redis cannot outlive this process usefully (nothing
    # would stop the server): stop it and report that run as not kept.
    for row in rows:
        space = row.run.workspace if row.run is not None else None
        if row.run is not None and space is not None and space.server is not None:
            space.server.close()
            row.run.workspace = None
