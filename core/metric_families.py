"""Declaring and reading the metric families of one instance, shared by :mod:`core.metrics`
and :mod:`core.metrics_ops`: every family of an instance has the same namespace and registry,
and live status reads them back as plain numbers.
"""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Info

__all__ = ["Families", "samples"]


class Families:
    """Declares counters, gauges and info families under one ``namespace`` on one ``registry``
    (so a declaration names only what differs: name, help text and labels)."""

    def __init__(self, registry: CollectorRegistry, namespace: str) -> None:
        self.registry = registry
        self.namespace = namespace

    def counter(self, name: str, documentation: str, labels: Sequence[str]) -> Counter:
        """A counter ``<namespace>_<name>_total`` with ``labels``."""
        return Counter(name, documentation, labels, namespace=self.namespace, registry=self.registry)

    def gauge(self, name: str, documentation: str, labels: Sequence[str]) -> Gauge:
        """A gauge ``<namespace>_<name>`` with ``labels``."""
        return Gauge(name, documentation, labels, namespace=self.namespace, registry=self.registry)

    def info(self, name: str, documentation: str, labels: Sequence[str] = ()) -> Info:
        """An info family ``<namespace>_<name>_info`` with ``labels``."""
        return Info(name, documentation, labels, namespace=self.namespace, registry=self.registry)


def samples(metric: Counter | Gauge) -> list[tuple[dict[str, str], int]]:
    """Every series of ``metric`` as (labels, value), without the ``_created`` timestamps
    (and the ``_gsum``/``_gcount`` of a gauge histogram)."""
    out = []
    for family in metric.collect():
        for sample in family.samples:
            if sample.name.endswith(("_created", "_gsum", "_gcount")):
                continue
            out.append((sample.labels, int(sample.value)))
    return out
