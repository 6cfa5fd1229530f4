"""A new service's metrics export at 0 the series the alert rules watch, read from the exposition
as Prometheus scrapes it, so a first, one-off event is an increase from 0 (increase() misses a
series that appears already at 1): dead letters, shadow mismatches and later versions,
legacy-shaped input."""

from __future__ import annotations

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from core.domain.contracts import MarketDataV1, OrderV1, SignalV1
from core.metrics import DEAD_LETTER_CAUSES, OTHER, SHADOW_DECODE_FIELD, ServiceMetrics
from core.redis.dead_letters import DeadLetterCause
from core.topics import CodecPath, ServiceName, Topic

Series = dict[str, dict[tuple[tuple[str, str], ...], float]]
"""Sample name -> (sorted labels -> value)."""


def _exposed(metrics: ServiceMetrics) -> Series:
    out: Series = {}
    for family in text_string_to_metric_families(generate_latest(metrics.registry).decode()):
        for s in family.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


def _key(**labels: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(labels.items()))


def _dead_letter_series(service: str, topic: str) -> set[tuple[tuple[str, str], ...]]:
    return {
        _key(service=service, topic=topic, path=path, cause=cause)
        for path in ("legacy", "pydantic")
        for cause in ("invalid", "handler_failed")
    }


def _shadow_series(service: str, topic: str, fields: list[str]) -> set[tuple[tuple[str, str], ...]]:
    return {_key(service=service, topic=topic, field=f) for f in [*fields, "<decode>", "other"]}


def _later_series(service: str, topic: str, versions: list[str]) -> set[tuple[tuple[str, str], ...]]:
    return {_key(service=service, topic=topic, version=v) for v in versions}


def _received_series(service: str, topic: str) -> set[tuple[tuple[str, str], ...]]:
    return {
        _key(service=service, topic=topic, direction="received", shape=shape) for shape in ("legacy", "v1.0")
    }


# Per service: its dead-letter topic, and its input topic with that topic's contract and the
# declared versions later than v1.0 (what shadow mode counts apart there).
_EXPECTED = {
    ServiceName.WS: ("market_data", None),
    ServiceName.SIGNAL: ("market_data", ("market_data", MarketDataV1, ["v2.0"])),
    ServiceName.RISK: ("signals", ("signals", SignalV1, ["v2.0"])),
    ServiceName.EXECUTION: ("orders", ("orders", OrderV1, ["v1.1", "v2.0"])),
}


_WATCHED = (
    "cdb_dead_letters_total",
    "cdb_shadow_mismatches_total",
    "cdb_shadow_later_version_total",
    "cdb_wire_shape_total",
)


def test_new_service_metrics__export_the_watched_series_at_zero() -> None:
    for service, (dlq_topic, input_topic) in _EXPECTED.items():
        exposed = _exposed(ServiceMetrics(service))
        name = service.value

        dead = exposed["cdb_dead_letters_total"]
        assert set(dead) == _dead_letter_series(name, dlq_topic), name
        shadow = exposed.get("cdb_shadow_mismatches_total", {})
        later = exposed.get("cdb_shadow_later_version_total", {})
        shapes = exposed.get("cdb_wire_shape_total", {})
        if input_topic is None:  # ws reads the exchange: no input stream
            assert shadow == later == shapes == {}
        else:
            topic, model, versions = input_topic
            assert set(shadow) == _shadow_series(name, topic, list(model.model_fields)), name
            assert set(later) == _later_series(name, topic, versions), name
            assert set(shapes) == _received_series(name, topic), name
        assert {*dead.values(), *shadow.values(), *later.values(), *shapes.values()} == {0.0}
        # Bounded: what the alerts need, not a cross product (no validation-error series).
        assert len(dead) + len(shadow) + len(later) + len(shapes) <= 20, name
        assert "cdb_validation_errors_total" not in exposed


def test_first_events__increase_the_series_exported_at_zero_instead_of_adding_one() -> None:
    metrics = ServiceMetrics(ServiceName.SIGNAL)
    before = _exposed(metrics)

    metrics.count_dead_letters(Topic.MARKET_DATA, CodecPath.PYDANTIC, DeadLetterCause.INVALID)
    metrics.count_dead_letters(Topic.MARKET_DATA, "legacy", DeadLetterCause.HANDLER_FAILED, 2)
    metrics.count_shadow(Topic.MARKET_DATA, ["price", SHADOW_DECODE_FIELD, "not-a-field"], later=["v2.0"])
    metrics.ops.count_received(Topic.MARKET_DATA, [(b"1-0", {b"symbol": b'"BTC/USDT"'})])

    after = _exposed(metrics)
    for name in _WATCHED:
        assert set(after[name]) == set(before[name]), name  # the same series, now above 0
    dead = after["cdb_dead_letters_total"]
    assert dead[_key(service="signal", topic="market_data", path="pydantic", cause="invalid")] == 1
    assert dead[_key(service="signal", topic="market_data", path="legacy", cause="handler_failed")] == 2
    shadow = after["cdb_shadow_mismatches_total"]
    for field in ("price", SHADOW_DECODE_FIELD, OTHER):
        assert shadow[_key(service="signal", topic="market_data", field=field)] == 1
    later = after["cdb_shadow_later_version_total"]
    assert later[_key(service="signal", topic="market_data", version="v2.0")] == 1
    shapes = after["cdb_wire_shape_total"]
    assert shapes[_key(service="signal", topic="market_data", direction="received", shape="legacy")] == 1


def test_series_at_zero__leave_live_status_as_it_was() -> None:
    snap = ServiceMetrics(ServiceName.EXECUTION).snapshot()
    assert (snap["dead_letters"], snap["shadow_mismatches"], snap["shadow_later_version"]) == (0, 0, 0)
    assert snap["shadow_by_field"] == snap["shadow_later_by_version"] == {}
    assert snap["wire_shape"] == {}


def test_dead_letter_causes__are_the_transports_causes() -> None:
    assert set(DEAD_LETTER_CAUSES) == {c.value for c in DeadLetterCause}


def test_a_name_outside_the_pipeline__exports_no_series_at_zero() -> None:
    exposed = _exposed(ServiceMetrics("replay-tool"))
    assert not set(_WATCHED) & set(exposed)
