"""The benchmark suite runs end to end (``--quick``: tiny sizes; no figure is asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bench.report import merge_document
from cdb.cli.main import app

ROOT = Path(__file__).resolve().parents[1]
SECTIONS = ("## Targets", "## 1. Codec", "## 2. Publish", "## 3. Consume", "## 4. End to end", "## 5. Memory")


@pytest.mark.integration
def test_bench_quick__writes_markdown_json_and_chart_for_every_section(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    markdown = (tmp_path / "BENCHMARKS.md").read_text(encoding="utf-8")
    assert all(section in markdown for section in SECTIONS)
    assert "](BENCHMARKS.png)" in markdown
    figures = json.loads((tmp_path / "BENCHMARKS.json").read_text(encoding="utf-8"))
    assert {"codec_us_per_message", "throughput_messages_per_s", "end_to_end", "targets"} <= set(figures)
    rows = {row["key"] for row in figures["throughput_messages_per_s"]}
    assert {"publish_many", "faststream_pipeline", "faststream_batch", "bare_strict"} <= rows
    assert figures["end_to_end"][0]["counts"]["market_data_sent"] > 0
    assert (tmp_path / "BENCHMARKS.png").read_bytes().startswith(b"\x89PNG")
    # Written elsewhere, the run still tells its machine against the committed run's.
    committed = json.loads((ROOT / "BENCHMARKS.json").read_text(encoding="utf-8"))
    machine = figures["machine_vs_committed"]
    assert machine["reference"].startswith(committed["machine"]["date"])
    assert machine["msgspec"] > 0
    assert machine["ping"] > 0
    told = f"msgspec's unchanged code took {machine['msgspec']:.1f}x as long"
    assert told in markdown
    assert told in done.stdout  # and on the console, beside the verdicts


def test_cdb_bench__passes_its_options_to_the_benchmark() -> None:
    result = CliRunner().invoke(app, ["bench", "--help"])
    assert result.exit_code == 0
    assert "--quick" in result.output


def test_merge_document__keeps_other_scripts_sections_and_drops_the_folded_transport_one() -> None:
    existing = (
        "# Benchmarks\n\nold intro\n\n## Transport (issue 3)\n\nold transport rows\n\n"
        "## Targets\n\nold targets\n\n## Scaling (issue 10)\n\nscaling table\n"
    )
    ours = "# Benchmarks\n\nnew intro\n\n## Targets\n\nnew targets\n"

    merged = merge_document(ours, existing)

    assert merged.startswith(ours.rstrip("\n"))
    assert merged.endswith("## Scaling (issue 10)\n\nscaling table\n")
    assert "old" not in merged


def test_bench_quick__writes_under_var_unless_told_and_never_over_the_committed_report() -> None:
    from bench.__main__ import QUICK_OUT, ROOT, parse_args

    assert parse_args(["--quick"]).out == QUICK_OUT
    assert QUICK_OUT.relative_to(ROOT).parts[0] == "var"  # git-ignored
    assert parse_args([]).out == ROOT
    assert parse_args(["--quick", "--out", "elsewhere"]).out == Path("elsewhere")


def test_cdb_bench__without_the_bench_extra_names_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "msgspec" else real(name, *a)
    )
    result = CliRunner().invoke(app, ["bench", "--quick"])
    assert result.exit_code == 2
    assert "msgspec missing" in result.output
    assert "pip install -e '.[bench]'" in result.output


def test_benchmarks_md__opens_with_the_summary_of_its_own_json_and_no_internal_words() -> None:
    from bench.summary import summary_from_json
    from tests.ops_helpers import ROOT

    document = json.loads((ROOT / "BENCHMARKS.json").read_text(encoding="utf-8"))
    text = (ROOT / "BENCHMARKS.md").read_text(encoding="utf-8")
    summary = "\n".join(summary_from_json(document))
    assert text.startswith("# Benchmarks\n\n" + summary + "\n")
    met = sum(1 for t in document["targets"] if t["met"])
    assert f"Verdicts: {met} of {len(document['targets'])} targets met." in summary
    for missed in (t for t in document["targets"] if not t["met"]):
        assert missed["name"] in summary
    lowered = text.lower()
    assert "issue" not in lowered
    assert "seed's" not in lowered


def test_bench_chart__redraws_the_committed_run_from_its_json(tmp_path: Path) -> None:
    from bench.chart import main as chart_main
    from tests.ops_helpers import ROOT

    out = tmp_path / "chart.png"
    assert chart_main([str(ROOT / "BENCHMARKS.json"), str(out)]) == 0
    assert out.read_bytes().startswith(b"\x89PNG")
    assert out.stat().st_size > 20_000  # three panels, not an empty canvas
