"""Metrics: bounded label values, one registry per service, a snapshot that matches the counters."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest

from core.metrics import KNOWN_FIELDS, KNOWN_REASONS, OTHER, Outcome, ServiceMetrics, bounded_reason
from core.topics import CodecPath, ServiceName, Topic


def _series(metrics: ServiceMetrics, name: str) -> list[dict[str, str]]:
    return [
        sample.labels
        for family in metrics.registry.collect()
        for sample in family.samples
        if sample.name == name
    ]


def test_bounded_reason__pydantic_and_own_error_types_kept_anything_else_other() -> None:
    assert bounded_reason("missing") == "missing"
    assert bounded_reason("finite_number") == "finite_number"
    assert bounded_reason("payload_too_large") == "payload_too_large"
    assert bounded_reason("DROP TABLE orders; --") == OTHER


@given(st.lists(st.text(max_size=40), min_size=1, max_size=200))
def test_validation_error_labels__any_reasons__at_most_known_reasons_plus_other(reasons: list[str]) -> None:
    metrics = ServiceMetrics(ServiceName.SIGNAL)

    metrics.count_validation_errors(Topic.MARKET_DATA, CodecPath.PYDANTIC, dict.fromkeys(reasons, 1))

    labels = {s["reason"] for s in _series(metrics, "cdb_validation_errors_total")}
    assert labels <= KNOWN_REASONS | {OTHER}
    assert sum(metrics.snapshot()["validation_reasons"].values()) == len(set(reasons))


@given(st.lists(st.text(max_size=40), min_size=1, max_size=50))
def test_defaults_filled_labels__any_field_names__contract_fields_or_other(names: list[str]) -> None:
    metrics = ServiceMetrics(ServiceName.RISK)

    metrics.count_defaults(Topic.SIGNALS, dict.fromkeys(names, 2))

    labels = {s["field"] for s in _series(metrics, "cdb_defaults_filled_total")}
    assert labels <= KNOWN_FIELDS | {OTHER}


def test_service_metrics__each_instance_has_its_own_registry() -> None:
    signal, risk = ServiceMetrics(ServiceName.SIGNAL), ServiceMetrics(ServiceName.RISK)

    signal.count_handled(Topic.MARKET_DATA, CodecPath.LEGACY, Outcome.OK, 3)

    assert signal.registry is not risk.registry
    assert signal.snapshot()["messages_ok"] == 3
    assert risk.snapshot()["messages_ok"] == 0


def test_service_metrics__registry_passed_in_is_used_for_exposition() -> None:
    registry = CollectorRegistry()
    metrics = ServiceMetrics("execution", registry)

    metrics.count_published(Topic.ORDER_RESULTS, CodecPath.PYDANTIC, 7)

    text = generate_latest(registry).decode()
    assert 'cdb_published_total{path="pydantic",service="execution",topic="order_results"} 7.0' in text


def test_snapshot__sums_every_counter_and_gauge() -> None:
    metrics = ServiceMetrics(ServiceName.SIGNAL)

    metrics.count_handled(Topic.MARKET_DATA, CodecPath.PYDANTIC, Outcome.OK, 5)
    metrics.count_handled(Topic.MARKET_DATA, CodecPath.PYDANTIC, Outcome.INVALID, 2)
    metrics.count_validation_errors(Topic.MARKET_DATA, CodecPath.PYDANTIC, {"missing": 1, "json_invalid": 1})
    metrics.count_dead_letters(Topic.MARKET_DATA, CodecPath.PYDANTIC, "invalid", 2)
    metrics.count_defaults(Topic.MARKET_DATA, {"timestamp": 4, "api_version": 4})
    metrics.count_retry("read")
    metrics.set_backlog(Topic.MARKET_DATA, lag=11, pending=3)
    snap = metrics.snapshot()

    assert (snap["messages_ok"], snap["messages_invalid"], snap["messages_retry"]) == (5, 2, 0)
    assert (snap["validation_errors"], snap["dead_letters"], snap["defaults_filled"]) == (2, 2, 8)
    assert (snap["transport_retries"], snap["lag"], snap["pending"]) == (1, 11, 3)
    assert snap["validation_reasons"] == {"missing": 1, "json_invalid": 1}
    assert snap["defaults_by_field"] == {"timestamp": 4, "api_version": 4}
