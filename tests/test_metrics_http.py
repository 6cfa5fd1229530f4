"""/metrics: METRICS_PORT, merged registries, bounded labels, and the ws dead-letter count."""

from __future__ import annotations

import urllib.request
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from core.errors import ConfigError
from core.metrics import ServiceMetrics
from core.metrics_http import MetricsTarget, metrics_target, serve_metrics, serve_metrics_on
from core.metrics_ops import OTHER_EVENT, shape_of_fields
from core.topics import KeySpace, ServiceName, Topic
from services.observability import desired_path
from services.runtime import ServiceContext
from services.ws.service import WsService
from tests.ops_helpers import service_settings


def _get(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        return str(reply.read().decode())


@pytest.mark.parametrize("value", ["abc", "-1", "65536", "80.5"])
def test_metrics_target__bad_port_is_refused_naming_the_variable(value: str) -> None:
    with pytest.raises(ConfigError) as err:
        metrics_target({"METRICS_PORT": value})
    assert err.value.variable == "METRICS_PORT"
    assert value in str(err.value)


@pytest.mark.parametrize(("value", "port"), [("", 0), ("0", 0), (" 9108 ", 9108)])
def test_metrics_target__empty_or_zero_is_off(value: str, port: int) -> None:
    target = metrics_target({"METRICS_PORT": value})
    assert target.port == port
    assert target.enabled is (port > 0)


def test_serve_metrics__off_target_serves_nothing() -> None:
    assert serve_metrics(MetricsTarget(0), CollectorRegistry()) is None


def test_metrics_target__bad_address_is_refused_naming_the_variable() -> None:
    with pytest.raises(ConfigError) as err:
        metrics_target({"METRICS_PORT": "9108", "METRICS_ADDR": "everywhere"})
    assert err.value.variable == "METRICS_ADDR"


def test_serve_metrics__port_in_use_is_a_config_error_naming_the_variable() -> None:
    first = serve_metrics_on("127.0.0.1", 0, CollectorRegistry())
    try:
        with pytest.raises(ConfigError) as err:
            serve_metrics(MetricsTarget(first.port), CollectorRegistry())
        assert err.value.variable == "METRICS_PORT"
    finally:
        first.close()


def test_serve_metrics__several_services_on_one_port_declare_each_family_once() -> None:
    signal, risk = ServiceMetrics(ServiceName.SIGNAL), ServiceMetrics(ServiceName.RISK)
    signal.count_published(Topic.SIGNALS, "pydantic", 3)
    risk.count_published(Topic.ORDERS, "legacy", 2)
    endpoint = serve_metrics_on("127.0.0.1", 0, signal.registry, risk.registry)
    try:
        text = _get(endpoint.port)
    finally:
        endpoint.close()
    assert text.count("# TYPE cdb_published_total counter") == 1
    families = {f.name: f for f in text_string_to_metric_families(text)}
    published = {
        (s.labels["service"], s.labels["topic"]): s.value
        for s in families["cdb_published"].samples
        if s.name == "cdb_published_total"
    }
    assert published == {("signal", "signals"): 3.0, ("risk", "orders"): 2.0}
    shapes = {
        (s.labels["service"], s.labels["shape"]): s.value
        for s in families["cdb_wire_shape"].samples
        if s.name == "cdb_wire_shape_total" and s.labels["direction"] == "published"
    }
    assert shapes == {("signal", "v1.0"): 3.0, ("risk", "legacy"): 2.0}


def test_operator_metrics__labels_stay_in_closed_sets() -> None:
    metrics = ServiceMetrics(ServiceName.EXECUTION)
    metrics.ops.count_event("duplicate_orders", 2)
    metrics.ops.count_event("made-up-event-" + "x" * 40, 5)
    metrics.ops.watch_source("mexc", lambda: {"bad_frames_by_reason": {"protobuf_invalid": 1, "weird": 4}})
    text = _get_text(metrics)
    events = _samples(text, "cdb_events_total", "event")
    assert events == {"duplicate_orders": 2.0, OTHER_EVENT: 5.0}
    assert _samples(text, "cdb_source_bad_frames_total", "reason") == {"protobuf_invalid": 1.0, "other": 4.0}


def test_shape_of_fields__an_entry_without_api_version_is_legacy_shaped() -> None:
    assert shape_of_fields({b"symbol": b'"BTC/USDT"'}).value == "legacy"
    assert shape_of_fields({b"api_version": b'"v1.0"', b"symbol": b'"BTC/USDT"'}).value == "v1.0"


def test_desired_path__reads_the_env_file_and_says_unknown_when_it_cannot(tmp_path: Path) -> None:
    env = tmp_path / "signal.env"
    env.write_text("USE_PYDANTIC_CONTRACTS=true\nCONTRACT_PROFILE=strict\n", encoding="utf-8")
    assert desired_path(ServiceName.SIGNAL, env) == ("pydantic", "strict")
    env.write_text("USE_PYDANTIC_CONTRACTS=false\n", encoding="utf-8")
    assert desired_path(ServiceName.SIGNAL, env) == ("legacy", None)
    env.write_text("USE_PYDANTIC_CONTRACTS=maybe\n", encoding="utf-8")
    assert desired_path(ServiceName.SIGNAL, env) == ("unknown", None)
    assert desired_path(ServiceName.SIGNAL, tmp_path / "missing.env") == ("unknown", None)


@pytest.mark.integration
async def test_ws_bad_frame__is_counted_as_a_dead_letter_in_status_and_metrics(
    redis_async: aioredis.Redis, keys: KeySpace
) -> None:
    settings = service_settings(ServiceName.WS, keys, "ws-1")
    ctx = ServiceContext.create(ServiceName.WS, settings, redis_async)
    ws = WsService(ctx, batch_size=1)
    await ws.on_bad_frame(b"\x00\x01not-protobuf", "protobuf_invalid: truncated")
    counts = ctx.live_state().counts
    assert await redis_async.xlen(keys.dlq(Topic.MARKET_DATA)) == 1
    assert counts["dead_letters"] == 1  # was 0 while the frame sat in market_data_dlq
    assert counts["validation_reasons"] == {"frame_invalid": 1}
    text = _get_text(ctx.metrics)
    assert _samples(text, "cdb_dead_letters_total", "topic") == {"market_data": 1.0}


def _get_text(metrics: ServiceMetrics) -> str:
    endpoint = serve_metrics_on("127.0.0.1", 0, metrics.registry)
    try:
        return _get(endpoint.port)
    finally:
        endpoint.close()


def _samples(text: str, name: str, label: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                out[sample.labels[label]] = out.get(sample.labels[label], 0.0) + sample.value
    return out
