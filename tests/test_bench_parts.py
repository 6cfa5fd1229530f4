"""Pieces of ``python -m bench`` that need no run: CPU per message and a partial run's carry-over."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench.carry import carried_targets, load_previous
from bench.e2e_cpu import per_message_us
from bench.summary import summary_from_json
from bench.targets import BARE_RATIO, FASTSTREAM_RATIO
from bench.yardstick import Yardstick, compare


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


def _run(
    date: str, msgspec_us: list[float], *, ping: float, msgspec: str = "0.22.0", **machine: Any
) -> dict[str, Any]:
    topics = ["market_data", "signals", "orders"]
    return {
        "machine": {
            "date": date,
            "cpu": "AMD EPYC",
            "os": "Linux 6",
            "redis_ping_us": ping,
            "packages": {"msgspec": msgspec},
            **machine,
        },
        "codec_us_per_message": [
            {"case": "msgspec", "topic": t, "operation": "decode", "median": us}
            for t, us in zip(topics, msgspec_us, strict=False)
        ]
        + [{"case": "legacy", "topic": "market_data", "operation": "decode", "median": 99.0}],
    }


def test_yardstick__a_slower_machine_is_told_by_msgspecs_cost_ping_and_python_speed() -> None:
    committed = _run("2026-11-30 20:21 UTC", [1.0, 2.0, 4.0], ping=50.0, python_speed_ms=10.0)
    slower = _run("2026-12-01 03:01 UTC", [3.0, 6.0, 10.0], ping=150.0, python_speed_ms=25.0)

    yardstick = compare(slower, committed)

    assert yardstick is not None
    assert (yardstick.msgspec, yardstick.ping, yardstick.python) == (3.0, 3.0, 2.5)  # median of 3, 3, 2.5
    assert yardstick.reference == "2026-11-30 20:21 UTC (AMD EPYC, Linux 6)"
    assert "msgspec's unchanged code took 3.0x as long, Redis PING 3.0x as long" in yardstick.sentence()
    assert Yardstick.from_json(json.loads(json.dumps(yardstick.to_json()))) == yardstick


def test_yardstick__another_msgspec_version_or_no_codec_run_tells_by_ping_alone() -> None:
    committed = _run("2026-11-30 20:21 UTC", [1.0], ping=50.0)
    upgraded = compare(_run("2026-12-01 03:01 UTC", [3.0], ping=100.0, msgspec="0.23.0"), committed)
    no_codec = compare({"machine": _run("2026-12-01 03:01 UTC", [], ping=100.0)["machine"]}, committed)

    for yardstick in (upgraded, no_codec):
        assert yardstick is not None
        assert (yardstick.msgspec, yardstick.ping, yardstick.python) == (None, 2.0, None)
        assert "msgspec" not in yardstick.sentence()


def test_yardstick__nothing_to_compare_without_a_committed_run_or_against_itself() -> None:
    run = _run("2026-12-01 03:01 UTC", [1.0], ping=50.0)
    assert compare(run, {}) is None
    assert compare(run, run) is None  # the committed run is this one
    assert Yardstick("then", None, None, None).sentence() == ""


def test_summary__states_the_machine_factor_under_the_verdicts_only_when_known() -> None:
    target = {"name": "codec: x", "wanted": "<= 1x", "measured": "0.5x", "met": True}
    factor = Yardstick("2026-11-30 20:21 UTC (AMD EPYC, Linux 6)", 2.8, 2.6, None).to_json()

    told = summary_from_json({"targets": [target], "machine_vs_committed": factor})
    untold = summary_from_json({"targets": [target]})

    verdicts = told.index("Verdicts: 1 of 1 targets met.")
    assert told[verdicts + 2].startswith("This machine against the committed run of 2026-11-30 20:21 UTC")
    assert "2.8x" in told[verdicts + 2]
    assert not any(line.startswith("This machine") for line in untold)
