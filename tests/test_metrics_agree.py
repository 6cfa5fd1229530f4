"""Every counter ``cdb status --json`` shows equals what the same process serves on /metrics.

The four services run as real processes (``cdb service NAME --env-file F``, each with
its own METRICS_PORT) on the real Redis with mixed paths; malformed entries are put
in front of signal so validation errors, dead letters and legacy-shaped input are
all non-zero. Once the pipeline is idle, each process's /metrics is scraped over
HTTP and compared, counter by counter, with its row in ``cdb status --json``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from core.metrics_ops import KNOWN_EVENTS
from core.topics import KeySpace, ServiceName, Topic
from tests.ops_helpers import cdb_json
from tests.service_procs import ServiceProcs, scrape, service_procs

pytestmark = [pytest.mark.integration, pytest.mark.slow]

_BAD = [  # what a broken producer might write to market_data
    {b"symbol": b"not json at all"},
    {b"api_version": b'"v1.0"', b"symbol": b'"BTC/USDT"', b"price": b"-5"},
    {b"junk": b"1"},
]


def _metrics(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, []).append((dict(s.labels), s.value))
    return out


def _sum(m: dict[str, Any], name: str, **match: str) -> int:
    return int(sum(v for labels, v in m.get(name, []) if all(labels.get(k) == x for k, x in match.items())))


def _by(m: dict[str, Any], name: str, label: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for labels, v in m.get(name, []):
        if v:
            out[labels[label]] = out.get(labels[label], 0) + int(v)
    return out


def _as_status(m: dict[str, Any]) -> dict[str, Any]:
    """The status row's counters, computed from one process's /metrics."""
    [(info, _)] = m["cdb_instance_info"]
    shapes = {
        f"{labels['direction']}.{labels['topic']}.{labels['shape']}": int(v)
        for labels, v in m.get("cdb_wire_shape_total", [])
        if v  # status leaves out the series exported at 0 from the start
    }
    events = _by(m, "cdb_events_total", "event")
    [(desired, _)] = m["cdb_desired_path_info"]
    return {
        "instance": info["instance_name"],
        "path": info["path"],
        "profile": None if info["profile"] == "none" else info["profile"],
        "shadow": info["shadow"] == "true",
        "partitions": int(info["partitions"]),
        "desired_path": desired["path"],
        "handled": sum(_sum(m, "cdb_messages_total", outcome=o) for o in ("ok", "invalid", "dead_lettered")),
        "published": _sum(m, "cdb_published_total"),
        "validation_errors": _sum(m, "cdb_validation_errors_total"),
        "validation_reasons": _by(m, "cdb_validation_errors_total", "reason"),
        "dead_letters": _sum(m, "cdb_dead_letters_total"),
        "defaults_filled": _sum(m, "cdb_defaults_filled_total"),
        "defaults_by_field": _by(m, "cdb_defaults_filled_total", "field"),
        "shadow_compared": _sum(m, "cdb_shadow_compared_total"),
        "shadow_mismatches": _sum(m, "cdb_shadow_mismatches_total"),
        "lag": _sum(m, "cdb_consumer_lag") + _sum(m, "cdb_consumer_pending"),
        "duplicates": events.get("duplicate_orders", 0),
        "wire_shape": shapes,
        "events": events,
    }


def _from_status(row: dict[str, Any]) -> dict[str, Any]:
    counts = row["counts"]
    events = {k: int(v) for k, v in counts.items() if k in KNOWN_EVENTS and v}
    return {
        **{k: row[k] for k in ("instance", "path", "profile", "shadow", "partitions", "desired_path")},
        **{
            k: row[k]
            for k in (
                "handled",
                "published",
                "validation_errors",
                "validation_reasons",
                "dead_letters",
                "defaults_filled",
                "defaults_by_field",
                "shadow_compared",
                "shadow_mismatches",
                "lag",
                "duplicates",
            )
        },
        "wire_shape": row["wire_shape"],
        "events": events,
    }


@pytest.fixture
def pipeline(redis_url: str, keys: KeySpace, tmp_path: Path) -> Iterator[ServiceProcs]:
    """ws legacy, signal pydantic lenient, risk legacy in shadow mode, execution pydantic."""
    client = redis.Redis.from_url(redis_url)
    for fields in _BAD:
        client.xadd(keys.stream(Topic.MARKET_DATA), fields)  # type: ignore[arg-type]
    client.close()
    with service_procs(redis_url, keys, tmp_path) as procs:
        procs.write_flags(ServiceName.WS, pydantic=False)
        procs.write_flags(ServiceName.SIGNAL, pydantic=True)
        procs.write_flags(ServiceName.RISK, pydantic=False)
        procs.write_flags(ServiceName.EXECUTION, pydantic=True)
        for service in (ServiceName.SIGNAL, ServiceName.RISK, ServiceName.EXECUTION):
            procs.start(service, **({"CONTRACT_SHADOW": "true"} if service is ServiceName.RISK else {}))
        procs.start(ServiceName.WS)
        yield procs


def _idle(rows: list[dict[str, Any]], redis_url: str, keys: KeySpace) -> bool:
    by = {r["service"]: r for r in rows}
    if set(by) != {s.value for s in ServiceName}:
        return False
    client = redis.Redis.from_url(redis_url)
    try:
        trades = client.xlen(keys.stream(Topic.MARKET_DATA))
    finally:
        client.close()
    return (
        by["ws"]["counts"].get("trades_published", 0) > 0
        and trades == by["ws"]["counts"]["trades_published"] + len(_BAD)
        and by["signal"]["handled"] == trades
        and all(r["lag"] == 0 for r in rows)
    )


def test_metrics__every_status_counter_equals_the_scraped_metrics(
    pipeline: ServiceProcs, redis_url: str, keys: KeySpace
) -> None:
    status_args = ("status", "--redis-url", redis_url, "--prefix", keys.prefix)
    deadline = time.monotonic() + 120
    while not _idle(rows := cdb_json(*status_args)["instances"], redis_url, keys):
        assert time.monotonic() < deadline, f"pipeline did not settle: {rows}\n{pipeline.log(ServiceName.WS)}"
        time.sleep(0.5)
    # Idle now; live status is written every 2 s, so wait until a report and a scrape agree.
    deadline = time.monotonic() + 20
    while True:
        rows = cdb_json(*status_args)["instances"]
        pairs = {
            r["service"]: (
                _from_status(r),
                _as_status(_metrics(scrape(pipeline.ports[ServiceName(r["service"])]))),
            )
            for r in rows
        }
        if all(a == b for a, b in pairs.values()) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    for service, (from_status, from_metrics) in pairs.items():
        assert from_status == from_metrics, service
    signal = pairs["signal"][0]
    # The test exercised what it compares: errors, dead letters, defaults, legacy-shaped input.
    assert signal["validation_errors"] == len(_BAD) == signal["dead_letters"]
    assert signal["defaults_filled"] > 0
    assert signal["wire_shape"]["received.market_data.legacy"] > 0
    assert pairs["risk"][0]["shadow_compared"] > 0
    assert pairs["ws"][0]["wire_shape"]["published.market_data.legacy"] > 0
    assert {r["desired_path"] for r in rows} == {"legacy", "pydantic"}
