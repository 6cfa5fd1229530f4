"""Pieces of ``python -m bench`` that need no run: CPU per message and a partial run's carry-over."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench.carry import carried_targets, load_previous
from bench.e2e_cpu import per_message_us
from bench.targets import BARE_RATIO, FASTSTREAM_RATIO


def test_per_message_us__sums_every_process_but_redis_into_pipeline() -> None:
    cpu = per_message_us({"ws": 2.0, "signal": 1.0, "redis": 5.0}, 100_000)
    assert cpu["ws"] == pytest.approx(20.0)
    assert cpu["signal"] == pytest.approx(10.0)
    assert cpu["redis"] == pytest.approx(50.0)
    assert cpu["pipeline"] == pytest.approx(30.0)  # Redis excluded


def test_per_message_us__no_messages_is_no_figure() -> None:
    assert per_message_us({"ws": 1.0}, 0) == {}


def _rates(key: str, samples: list[float]) -> dict[str, Any]:
    return {"key": key, "samples": samples}


def _previous(consume: float) -> dict[str, Any]:
    rows = [
        _rates("publish_many", [100.0, 100.0]),
        _rates("faststream_pipeline", [30.0, 30.0]),
        _rates("naive", [5.0, 5.0]),
        _rates("faststream_batch", [50.0, 50.0]),
    ]
    for label in ("strict", "lenient"):
        rows += [_rates(f"consume_{label}", [consume, consume]), _rates(f"bare_{label}", [100.0, 100.0])]
    return {
        "machine": {"date": "2026-11-29 00:47 UTC"},
        "throughput_messages_per_s": rows,
        "targets": [
            {"name": "end to end all-pydantic: capacity", "wanted": "x", "measured": "1", "met": False}
        ],
    }


@pytest.mark.parametrize(("consume", "met"), [(98.0, True), (96.0, False)])
def test_carried_targets__re_evaluates_earlier_figures_against_todays_thresholds(
    consume: float, met: bool
) -> None:
    targets = carried_targets(_previous(consume), ran={"codec", "e2e"})
    bare = [t for t in targets if "bare redis-py loop" in t.name]
    assert len(bare) == 2
    assert all(t.wanted == f">= {BARE_RATIO}x" and t.met is met for t in bare)
    faststream = [t for t in targets if "FastStream batch" in t.name]
    assert all(t.wanted == f">= {FASTSTREAM_RATIO:g}x" for t in faststream)
    assert all(t.measured.endswith("[run of 2026-11-29 00:47 UTC]") for t in targets)
    assert not [t for t in targets if t.name.startswith("end to end")]  # e2e ran: none carried


def test_carried_targets__a_section_that_ran_is_not_carried() -> None:
    assert carried_targets(_previous(98.0), ran={"codec", "throughput", "e2e"}) == []
    e2e_only = carried_targets(_previous(98.0), ran={"codec", "throughput"})
    assert [t.name for t in e2e_only] == ["end to end all-pydantic: capacity"]


def test_load_previous__missing_or_broken_json_is_empty(tmp_path: Path) -> None:
    assert load_previous(tmp_path) == {}
    (tmp_path / "BENCHMARKS.json").write_text("{not json", encoding="utf-8")
    assert load_previous(tmp_path) == {}
    (tmp_path / "BENCHMARKS.json").write_text(json.dumps({"a": 1}), encoding="utf-8")
    assert load_previous(tmp_path) == {"a": 1}
