"""Every contract version of every topic and the changes between them, declared once.

This is the one place a contract change is written down (docs/changing-a-contract.md). From it
come the converters (:mod:`core.versions.convert`), the JSON Schema of every version
(:mod:`core.versions.schema`), the versions a service can read or write (settings, live state,
the live gate) and the tests that check each model against its declared changes.

``v1.1`` (additive, orders and order results only): ``time_in_force`` (GTC/IOC, default GTC) and
``client_order_id`` on orders, ``ordered_quantity`` on results. ``v2.0`` (breaking, every topic):
prices, sizes and fees as exact decimal strings; ``MarketData.volume`` renamed ``quantity``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import BaseModel

from core.domain.contracts import API_VERSION, MarketDataV1, OrderResultV1, OrderV1, SignalV1
from core.topics import Topic
from core.versions.changes import (
    Change,
    FieldAdded,
    FieldRenamed,
    ValueConverted,
    decimal_to_float,
    float_to_decimal,
)
from core.versions.fields import TimeInForce
from core.versions.models import (
    MarketDataV2,
    OrderResultV1_1,
    OrderResultV2,
    OrderV1_1,
    OrderV2,
    SignalV2,
)

__all__ = [
    "BASE_VERSION",
    "VERSIONS",
    "TopicVersions",
    "VersionStep",
    "known_versions",
    "later_versions",
    "version_key",
]

BASE_VERSION = API_VERSION
"""The oldest declared version: what a service's code gets unless :mod:`core.versions.own` names
another, and what every producer writes by default."""

DECIMAL_ROUNDING = (
    "v1 float -> v2 decimal: the float's shortest round-tripping decimal (Python repr; 0.1 -> '0.1'), "
    "exact; a value needing more than 64 characters is refused. v2 decimal -> v1 float: the nearest "
    "float (IEEE 754, round half to even), exact for at most 15 significant digits; trailing zeros "
    "('1.50') are not kept; beyond the float range or below its smallest value: refused"
)


def version_key(version: str) -> tuple[int, ...]:
    """Sort key of ``v<major>.<minor>`` (``v1.10`` after ``v1.9``)."""
    return tuple(int(part) if part.isdigit() else -1 for part in version.lstrip("v").split("."))


@dataclass(frozen=True)
class VersionStep:
    """The changes from ``older`` to ``newer`` of one topic, in the order they apply going up."""

    older: str
    newer: str
    changes: tuple[Change, ...]

    @property
    def breaking(self) -> bool:
        """True when a reader of one side cannot read the other side's messages unconverted."""
        return any(c.breaking for c in self.changes)


@dataclass(frozen=True)
class TopicVersions:
    """The versions of one topic (oldest first) and the step between each two neighbours."""

    topic: Topic
    models: dict[str, type[BaseModel]]
    steps: tuple[VersionStep, ...] = field(default=())

    @property
    def versions(self) -> list[str]:
        """Every declared version, oldest first."""
        return sorted(self.models, key=version_key)

    def model(self, version: str) -> type[BaseModel]:
        """The model of ``version`` (``KeyError`` when not declared)."""
        return self.models[version]

    def path(self, source: str, target: str) -> list[tuple[VersionStep, bool]]:
        """The steps from ``source`` to ``target``, each with ``True`` when applied upwards."""
        order = self.versions
        i, j = order.index(source), order.index(target)
        by_pair = {(s.older, s.newer): s for s in self.steps}
        if i <= j:
            return [(by_pair[(order[k], order[k + 1])], True) for k in range(i, j)]
        return [(by_pair[(order[k - 1], order[k])], False) for k in range(i, j, -1)]


def _decimal(name: str) -> ValueConverted:
    return ValueConverted(
        name, float_to_decimal, decimal_to_float, DECIMAL_ROUNDING, "binary float -> exact decimal string"
    )


_TIF = FieldAdded("time_in_force", TimeInForce.GTC, refuse_lossy_down=True)
_CLIENT_ID = FieldAdded("client_order_id", None)

VERSIONS: dict[Topic, TopicVersions] = {
    Topic.MARKET_DATA: TopicVersions(
        Topic.MARKET_DATA,
        {"v1.0": MarketDataV1, "v2.0": MarketDataV2},
        (
            VersionStep(
                "v1.0", "v2.0", (FieldRenamed("volume", "quantity"), _decimal("price"), _decimal("quantity"))
            ),
        ),
    ),
    Topic.SIGNALS: TopicVersions(
        Topic.SIGNALS,
        {"v1.0": SignalV1, "v2.0": SignalV2},
        (VersionStep("v1.0", "v2.0", (_decimal("price"),)),),
    ),
    Topic.ORDERS: TopicVersions(
        Topic.ORDERS,
        {"v1.0": OrderV1, "v1.1": OrderV1_1, "v2.0": OrderV2},
        (
            VersionStep("v1.0", "v1.1", (_TIF, _CLIENT_ID)),
            VersionStep("v1.1", "v2.0", (_decimal("quantity"), _decimal("price"))),
        ),
    ),
    Topic.ORDER_RESULTS: TopicVersions(
        Topic.ORDER_RESULTS,
        {"v1.0": OrderResultV1, "v1.1": OrderResultV1_1, "v2.0": OrderResultV2},
        (
            VersionStep("v1.0", "v1.1", (FieldAdded("ordered_quantity", None),)),
            VersionStep(
                "v1.1",
                "v2.0",
                tuple(_decimal(n) for n in ("ordered_quantity", "filled_quantity", "average_price", "fee")),
            ),
        ),
    ),
}
"""The declaration: every topic's versions and changes."""


def known_versions(topic: Topic) -> list[str]:
    """Every version of ``topic``, oldest first."""
    return VERSIONS[topic].versions


def later_versions(topic: Topic) -> list[str]:
    """Every version of ``topic`` after v1.0, oldest first: the ones the legacy path cannot read."""
    return [v for v in known_versions(topic) if v != BASE_VERSION]
