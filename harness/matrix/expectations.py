"""What each mix must do, stated from the migration rules before anything runs.

The rule (DESIGN, "Rules that make mixed versions work"): a consumer on the
strict profile refuses a message without ``api_version`` or ``timestamp``; every
other consumer (legacy, or Pydantic with the lenient profile) reads every
producer's messages. A producer on the Pydantic path always adds both fields; a
legacy producer omits what its legacy class never had (:data:`LEGACY_OMITS`).

So for a mix, walk the pipeline: the first strict consumer whose producer is
legacy dead-letters everything that producer publishes, and nothing reaches the
services after it. Without such a pair the mix must trade exactly as the
all-legacy baseline.

With the ``mixed`` input set (:mod:`harness.matrix.inputs`) the baseline and every mix
also get legacy-shaped, timestamp-less and malformed messages; the expectation then
also says which of them the mix must dead-letter (:class:`InputExpectation`): a mix
without a strict consumer still equals the baseline exactly, dead letters included; a
strict consumer also dead-letters the injected legacy-shaped messages of its topic, and
a strict execution therefore lacks their order results.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum

from core.topics import ServiceName, Topic
from harness.matrix.inputs import InputExpectation, InputSet, inputs_expectation
from harness.matrix.mixes import Mix, Variant

__all__ = ["LEGACY_OMITS", "Expectation", "Outcome", "expected_outcome"]

LEGACY_OMITS: dict[Topic, tuple[str, ...]] = {
    Topic.MARKET_DATA: ("api_version",),
    Topic.SIGNALS: ("api_version", "timestamp"),
    Topic.ORDERS: ("api_version", "timestamp"),
    Topic.ORDER_RESULTS: ("api_version", "timestamp"),
}
"""The v1.0 fields a legacy producer's messages lack, per topic (as migration/legacy.py
publishes them: only the legacy market data carried a timestamp). Checked by a test."""

_PRODUCER_OF = {service.produces: service for service in ServiceName}


class Outcome(StrEnum):
    """The kind of result a mix must have."""

    MATCH = "match"
    """Same order results and stored rows as the all-legacy baseline; no dead letters."""
    DEAD_LETTERS = "dead_letters"
    """One strict consumer dead-letters every message of its legacy producer; nothing after it."""


@dataclass(frozen=True, slots=True)
class Expectation:
    """The stated outcome of one mix and the reason, for the table and the checks."""

    outcome: Outcome
    reason: str
    consumer: ServiceName | None = None
    """The strict consumer that refuses (``DEAD_LETTERS`` only)."""
    producer: ServiceName | None = None
    """The legacy producer it refuses (``DEAD_LETTERS`` only)."""
    topic: Topic | None = None
    """The topic whose dead-letter stream fills (``DEAD_LETTERS`` only)."""
    missing: tuple[str, ...] = ()
    """The fields every dead letter must name as missing (``DEAD_LETTERS`` only)."""
    inputs: InputExpectation | None = None
    """What the mix must do with the injected messages (``mixed`` input set only)."""

    @property
    def starved(self) -> tuple[Topic, ...]:
        """Topics that must stay empty: those after the refused one."""
        if self.topic is None:
            return ()
        topics = list(Topic)
        return tuple(topics[topics.index(self.topic) + 1 :])


def expected_outcome(mix: Mix, inputs: InputSet = InputSet.CLEAN) -> Expectation:
    """The outcome ``mix`` must have on ``inputs``, with a human-readable reason."""
    expectation = _pipeline_outcome(mix)
    if inputs is InputSet.CLEAN:
        return expectation
    extra = inputs_expectation(mix)
    return replace(expectation, reason=f"{expectation.reason}; {extra.reason}", inputs=extra)


def _pipeline_outcome(mix: Mix) -> Expectation:
    for consumer in ServiceName:
        topic = consumer.consumes
        if topic is None or mix.variant(consumer) is not Variant.STRICT:
            continue
        producer = _PRODUCER_OF[topic]
        if mix.variant(producer) is not Variant.LEGACY:
            continue
        missing = LEGACY_OMITS[topic]
        return Expectation(
            Outcome.DEAD_LETTERS,
            f"{consumer.value} is strict and {producer.value} is legacy: every {topic.value} message "
            f"lacks {' and '.join(missing)}, so {consumer.value} dead-letters all of them "
            "and nothing reaches the services after it",
            consumer=consumer,
            producer=producer,
            topic=topic,
            missing=missing,
        )
    if mix == Mix():
        return Expectation(Outcome.MATCH, "the baseline: every service legacy")
    if mix.strict:
        return Expectation(
            Outcome.MATCH,
            "every strict consumer reads a Pydantic producer, which adds api_version and timestamp: "
            "same trades as all-legacy",
        )
    return Expectation(
        Outcome.MATCH,
        "lenient readers accept every producer's messages and business logic reads the same fields: "
        "same trades as all-legacy",
    )
