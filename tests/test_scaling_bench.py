"""The scaling benchmark rewrites only its own section of BENCHMARKS.md and renders every case."""

from __future__ import annotations

from pathlib import Path

from bench.scaling import CASES, SECTION, render, write_section
from bench.scaling_run import CaseResult
from bench.stats import Figure


def test_write_section__replaces_only_the_scaling_section(tmp_path: Path) -> None:
    target = tmp_path / "BENCHMARKS.md"
    target.write_text(
        "# Benchmarks\n\n## Transport (issue 3)\n\ntransport table\n\n"
        f"{SECTION}\n\nold\n\n## Later\n\nlater\n",
        encoding="utf-8",
    )
    write_section(f"{SECTION}\n\nnew numbers\n", target)
    text = target.read_text(encoding="utf-8")
    assert "\nold\n" not in text
    assert text.index("transport table") < text.index("new numbers") < text.index("## Later")


def test_render__one_row_per_case_with_capacity_and_latency() -> None:
    results = [
        CaseResult(
            case, capacity=Figure([1_000.0, 1_200.0]), offered=500.0, signal_ms=[1, 2, 9], result_ms=[5]
        )
        for case in CASES
    ]
    text = render(results, seconds=5, rate=500, rounds=1, load=(1.0, 2.0))
    assert text.startswith(SECTION)
    rows = [line for line in text.splitlines() if line.startswith("| ") and "partition" in line]
    assert len(rows) == len(CASES)
    assert "1,100 (1,000-1,200)" in rows[0]
    assert "cluster (3 primaries), 4 partition(s), 2 instance(s)/service" in rows[-1]
