"""Prometheus metrics of one service instance, with bounded label values.

Every label value comes from a closed set: services, topics, paths and outcomes
are enums; a validation ``reason`` is a pydantic error type or one of ours, and
anything else is counted as ``other``; a defaulted ``field`` is a contract field
or ``other``. So a flood of odd input cannot blow up the series count.

Each :class:`ServiceMetrics` registers on its own :class:`CollectorRegistry`
unless one is passed in, so tests and the in-process pipeline of four services
never collide on metric names. :meth:`ServiceMetrics.snapshot` returns the same
counts as a plain dict, for live status.

A labelled counter has no series until its first increment, and Prometheus's ``increase()``
does not see a jump from no series to 1: an alert on a first, one-off event would never fire.
So a new :class:`ServiceMetrics` exports at 0 the series the alert rules
(deploy/prometheus/cdb-rules.yml) watch whose labels the service knows from its name alone
(:class:`ServiceMetrics` says which).
"""

from __future__ import annotations

import collections
import typing
from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge
from pydantic_core.core_schema import ErrorType

from core.domain.contracts import MarketDataV1, OrderResultV1, OrderV1, SignalV1
from core.metric_families import Families, samples
from core.metrics_latency import ConsumeLatency
from core.metrics_ops import OperatorMetrics
from core.topics import CodecPath, ServiceName, Topic
from core.versions.declaration import later_versions

__all__ = [
    "DEAD_LETTER_CAUSES",
    "KNOWN_FIELDS",
    "KNOWN_REASONS",
    "OTHER",
    "SHADOW_DECODE_FIELD",
    "IgnoreReason",
    "Outcome",
    "ServiceMetrics",
    "bounded_field",
    "bounded_reason",
]

OTHER = "other"
"""The label value for anything outside a closed set."""

SHADOW_DECODE_FIELD = "<decode>"
"""Shadow mismatch pseudo-field: one path decoded, the other refused (migration.shadow.DECODE_FIELD)."""

_OWN_REASONS = frozenset(
    {
        "payload_too_large",  # refused before parsing (MAX_MESSAGE_BYTES)
        "duplicate_field",  # a stream entry that gives a field name twice (core.codec.fields)
        "store_refused",  # execution's store refused a fill's values (a NUL in a text, ...)
        "serialization",  # a message that could not be encoded
        "frame_invalid",  # an exchange frame ws could not decode
        "handler_error",  # the service's handler raised
        "max_deliveries",  # delivered too often without an ack (a consumer kept dying)
        "decoder_crash",  # the codec raised something other than ContractError (a bug)
        "unknown_api_version",  # a contract version this reader does not know (core.versions)
        "retired_api_version",  # a version retired here (RETIRED_VERSIONS_<TOPIC>)
        "version_conversion",  # a version that does not convert to the one the code reads
    }
)
KNOWN_REASONS: frozenset[str] = frozenset(typing.get_args(ErrorType)) | _OWN_REASONS
"""Validation reasons that are label values as they are; any other becomes ``other``."""

KNOWN_FIELDS: frozenset[str] = frozenset(
    name for model in (MarketDataV1, SignalV1, OrderV1, OrderResultV1) for name in model.model_fields
)
"""Field names that are label values as they are (every contract field)."""

DEAD_LETTER_CAUSES: tuple[str, ...] = ("invalid", "handler_failed")
"""The values of :class:`core.redis.dead_letters.DeadLetterCause`, spelled out: importing that
module runs ``core.redis``, whose consumer imports this module."""

_INPUT_FIELDS: dict[Topic, tuple[str, ...]] = {
    topic: tuple(model.model_fields)
    for topic, model in (
        (Topic.MARKET_DATA, MarketDataV1),
        (Topic.SIGNALS, SignalV1),
        (Topic.ORDERS, OrderV1),
        (Topic.ORDER_RESULTS, OrderResultV1),
    )
}


def bounded_reason(reason: str) -> str:
    """``reason`` if it is a known error type, else ``other``."""
    return reason if reason in KNOWN_REASONS else OTHER


def bounded_field(name: str) -> str:
    """``name`` if it is a contract field, else ``other``."""
    return name if name in KNOWN_FIELDS else OTHER


class Outcome(StrEnum):
    """What became of one stream entry a consumer received."""

    OK = "ok"
    """The handler finished; the entry was acknowledged."""
    INVALID = "invalid"
    """It did not decode; it was dead-lettered and acknowledged."""
    RETRY = "retry"
    """The handler raised; the entry stays pending for another delivery."""
    DEAD_LETTERED = "dead_lettered"
    """The handler kept failing (max deliveries); dead-lettered and acknowledged."""


class IgnoreReason(StrEnum):
    """Why a service dropped a valid message on purpose (``cdb_messages_ignored_total``'s ``reason``).

    docs/architecture.md, "What a service ignores on purpose", says what each one means.
    """

    STALE = "stale"
    """A trade strictly older than the last trade its symbol applied (out of order): refused."""
    DUPLICATE = "duplicate"
    """Already handled: a redelivered stream entry (same entry id in its partition), the same
    trade again (same exchange trade id, or same content in the same millisecond when there is
    no trade id), a signal already decided, an order already filled and published. State is not
    applied twice; an output the first delivery made may be sent again (at least once)."""
    TIME_FILLED = "time_filled"
    """A trade whose time the lenient profile filled in (the producer sent none): that time is
    not business time, so the trade cannot be placed among its symbol's trades; not applied
    (it must not change what happens to any other trade)."""
    GONE = "gone"
    """The entry was trimmed or deleted from its stream while pending: nothing left to handle."""


def _label(value: object) -> str:
    return value.value if isinstance(value, StrEnum) else str(value)


class ServiceMetrics:
    """The counters and gauges of one service instance.

    ``registry``: where to register (default: a fresh one for this instance);
    expose it with ``prometheus_client.generate_latest(metrics.registry)``.

    For a pipeline service (a :class:`ServiceName`) these series exist at 0 from the start, so
    that an alert sees their first event as an increase:

    - ``cdb_dead_letters_total`` of the topic whose dead-letter stream it writes, every path and
      every cause (2 x 2: the path is chosen after the metrics are made);
    - ``cdb_shadow_mismatches_total`` of its input topic, every field of that topic's contract
      plus ``<decode>`` and ``other`` (what shadow mode can name there; they stay 0 when it is off);
    - ``cdb_shadow_later_version_total`` of its input topic, every declared version of it later
      than v1.0 (the only versions shadow mode counts there; 0 when it is off);
    - ``cdb_wire_shape_total{direction="received"}`` of its input topic, both shapes.

    Not ``cdb_validation_errors_total``: a series per error type (over a hundred) and path would
    be the cross product the bounded labels avoid; its alert counts a new series from 0 instead.
    Live status (:meth:`snapshot`) leaves these zeros out, as before.
    """

    def __init__(
        self,
        service: ServiceName | str,
        registry: CollectorRegistry | None = None,
        *,
        namespace: str = "cdb",
    ) -> None:
        self.service = _label(service)
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        f = Families(self.registry, namespace)
        self.messages = f.counter(
            "messages",
            "Stream entries a consumer received, by outcome.",
            ["service", "topic", "path", "outcome"],
        )
        self.published = f.counter("published", "Messages published.", ["service", "topic", "path"])
        self.validation_errors = f.counter(
            "validation_errors",
            "Messages that failed to decode, by the first error's type.",
            ["service", "topic", "path", "reason"],
        )
        self.dead_letters = f.counter(
            "dead_letters",
            "Entries written to a dead-letter stream, by cause (invalid, handler_failed).",
            ["service", "topic", "path", "cause"],
        )
        self.defaults_filled = f.counter(
            "defaults_filled",
            "Fields the lenient profile filled in because a producer omitted them.",
            ["service", "topic", "field"],
        )
        self.ignored = f.counter(
            "messages_ignored",
            "Valid messages a service dropped on purpose, by reason (stale, duplicate, time_filled, gone).",
            ["service", "topic", "reason"],
        )
        self.transport_retries = f.counter(
            "transport_retries",
            "Redis calls retried after a connection error or timeout.",
            ["service", "operation"],
        )
        self.consumer_lag = f.gauge(
            "consumer_lag",
            "Entries of the input stream not yet delivered to this service's group.",
            ["service", "topic"],
        )
        self.consumer_pending = f.gauge(
            "consumer_pending",
            "Entries delivered to this service's group but not yet acknowledged.",
            ["service", "topic"],
        )
        self.shadow_compared = f.counter(
            "shadow_compared",
            "Messages decoded on both paths in shadow mode (CONTRACT_SHADOW).",
            ["service", "topic"],
        )
        self.shadow_mismatches = f.counter(
            "shadow_mismatches",
            "Fields where the two paths decoded a message differently (field '<decode>': one side refused).",
            ["service", "topic", "field"],
        )
        self.shadow_later_version = f.counter(
            "shadow_later_version",
            "Messages shadow mode did not compare field by field: of a contract version later than "
            "the legacy path reads (not a mismatch).",
            ["service", "topic", "version"],
        )
        self.consume_latency = ConsumeLatency(self.service, self.registry, namespace)
        """``cdb_consume_latency_seconds{service,topic}``: XADD to finished, on every entry
        (:mod:`core.metrics_latency`)."""
        # --- operator metrics (wire shape, business events, sources, identity): core.metrics_ops
        self.ops = OperatorMetrics(self.service, self.registry, namespace)
        self._start_at_zero()

    def _start_at_zero(self) -> None:
        # The series of the class docstring. A name outside the pipeline (a test's) knows no topics.
        try:
            service = ServiceName(self.service)
        except ValueError:
            return
        for path in CodecPath:
            for cause in DEAD_LETTER_CAUSES:
                self.dead_letters.labels(self.service, service.dead_letters.value, path.value, cause)
        topic = service.consumes
        if topic is None:
            return  # ws reads the exchange: no input stream to compare or measure
        for name in (*_INPUT_FIELDS[topic], SHADOW_DECODE_FIELD, OTHER):
            self.shadow_mismatches.labels(self.service, topic.value, name)
        for version in later_versions(topic):
            self.shadow_later_version.labels(self.service, topic.value, version)
        self.ops.expect_input(topic)

    def count_handled(self, topic: Topic, path: str, outcome: Outcome, n: int = 1) -> None:
        """Add ``n`` entries of ``topic`` that ended with ``outcome``."""
        if n:
            self.messages.labels(self.service, _label(topic), _label(path), outcome.value).inc(n)

    def count_published(self, topic: Topic, path: str, n: int = 1) -> None:
        """Add ``n`` published messages."""
        if n:
            self.published.labels(self.service, _label(topic), _label(path)).inc(n)
            self.ops.count_published(topic, _label(path), n)

    def count_validation_errors(self, topic: Topic, path: str, reasons: Mapping[str, int]) -> None:
        """Add decode failures, ``reasons`` mapping a reason (bounded here) to a count."""
        for reason, n in reasons.items():
            self.validation_errors.labels(
                self.service, _label(topic), _label(path), bounded_reason(reason)
            ).inc(n)

    def count_dead_letters(self, topic: Topic, path: str, cause: str, n: int = 1) -> None:
        """Add ``n`` dead letters written for ``cause``."""
        if n:
            self.dead_letters.labels(self.service, _label(topic), _label(path), _label(cause)).inc(n)

    def count_defaults(self, topic: Topic, fields: Mapping[str, int]) -> None:
        """Add defaults filled by the lenient profile, ``fields`` mapping a field to a count."""
        for name, n in fields.items():
            self.defaults_filled.labels(self.service, _label(topic), bounded_field(name)).inc(n)

    def count_ignored(self, topic: Topic, reason: IgnoreReason, n: int = 1) -> None:
        """Add ``n`` valid messages of ``topic`` dropped on purpose for ``reason``."""
        if n:
            self.ignored.labels(self.service, _label(topic), reason.value).inc(n)

    def count_retry(self, operation: str) -> None:
        """Count one retried Redis call (``operation`` is one of the transport's own names)."""
        self.transport_retries.labels(self.service, operation).inc()

    def set_backlog(self, topic: Topic, *, lag: int, pending: int) -> None:
        """Record the consumer group's backlog on ``topic``."""
        self.consumer_lag.labels(self.service, _label(topic)).set(lag)
        self.consumer_pending.labels(self.service, _label(topic)).set(pending)

    def count_shadow(
        self, topic: Topic, fields: Sequence[str], later: Sequence[str] = (), compared: int = 1
    ) -> None:
        """Count ``compared`` messages compared in shadow mode (one by default: a
        :data:`~core.codec.base.ShadowCallback`), their mismatching ``fields``, one name per
        mismatch (bounded here), and ``later``, one declared contract version per message of a
        version later than the legacy path reads (not a mismatch). The out-of-band comparator
        counts a whole batch at once."""
        self.shadow_compared.labels(self.service, _label(topic)).inc(compared)
        for version, n in collections.Counter(later).items():
            self.shadow_later_version.labels(self.service, _label(topic), _label(version)).inc(n)
        if not fields:
            return
        for name, n in collections.Counter(fields).items():
            label = name if name == SHADOW_DECODE_FIELD else bounded_field(name)
            self.shadow_mismatches.labels(self.service, _label(topic), label).inc(n)

    def snapshot(self) -> dict[str, Any]:
        """The counts as a plain dict (summed over topics and paths), for live status.

        Keys: ``messages_<outcome>`` for every :class:`Outcome`, ``published``,
        ``validation_errors``, ``dead_letters``, ``defaults_filled``,
        ``transport_retries``, ``lag``, ``pending``, ``shadow_compared``,
        ``shadow_mismatches``, ``shadow_later_version``, ``ignored`` (ints), and the breakdowns
        ``validation_reasons``,
        ``defaults_by_field`` and ``ignored_by_reason`` (reason/field -> int; every
        :class:`IgnoreReason` is present, 0 included) and ``shadow_by_field``
        (``"<topic>.<field>"`` -> int, not 0) and ``shadow_later_by_version`` (``"<topic>.<version>"``
        -> int, not 0), plus :meth:`OperatorMetrics.snapshot`'s keys.
        """
        out: dict[str, Any] = {f"messages_{o.value}": 0 for o in Outcome}
        for labels, value in samples(self.messages):
            out[f"messages_{labels['outcome']}"] += value
        reasons = _by(self.validation_errors, "reason")
        fields = _by(self.defaults_filled, "field")
        ignored = {r.value: 0 for r in IgnoreReason} | _by(self.ignored, "reason")
        out.update(
            published=_total(self.published),
            validation_errors=sum(reasons.values()),
            dead_letters=_total(self.dead_letters),
            defaults_filled=sum(fields.values()),
            transport_retries=_total(self.transport_retries),
            lag=_total(self.consumer_lag),
            pending=_total(self.consumer_pending),
            validation_reasons=reasons,
            defaults_by_field=fields,
            ignored=sum(ignored.values()),
            ignored_by_reason=ignored,
            shadow_compared=_total(self.shadow_compared),
            shadow_mismatches=_total(self.shadow_mismatches),
            shadow_by_field={  # without the series exported at 0 from the start
                f"{labels['topic']}.{labels['field']}": value
                for labels, value in samples(self.shadow_mismatches)
                if value
            },
            shadow_later_version=_total(self.shadow_later_version),
            shadow_later_by_version={  # likewise without the series at 0
                f"{labels['topic']}.{labels['version']}": value
                for labels, value in samples(self.shadow_later_version)
                if value
            },
        )
        out.update(self.ops.snapshot())
        return out


def _total(metric: Counter | Gauge) -> int:
    return sum(value for _, value in samples(metric))


def _by(metric: Counter, label: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for labels, value in samples(metric):
        out[labels[label]] = out.get(labels[label], 0) + value
    return out
