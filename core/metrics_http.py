"""Serving ``/metrics``: prometheus-client's own HTTP server on ``METRICS_PORT``.

Each service process serves its :class:`~core.metrics.ServiceMetrics` registry;
``cdb run`` serves the registries of its four in-process services on one port,
merged so that each metric family appears once (Prometheus refuses a second
``# TYPE`` line for the same name). ``METRICS_PORT`` empty or ``0`` serves nothing;
``METRICS_ADDR`` is the address to bind (default ``127.0.0.1``: the containers set
``0.0.0.0`` so Prometheus can reach them on the compose network).
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from threading import Thread
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from core.errors import ConfigError

__all__ = [
    "MergedCollector",
    "MetricsEndpoint",
    "MetricsTarget",
    "metrics_target",
    "serve_metrics",
    "serve_metrics_on",
]

_PORT_VAR, _ADDR_VAR = "METRICS_PORT", "METRICS_ADDR"


@dataclass(frozen=True, slots=True)
class MetricsTarget:
    """Where to serve ``/metrics``: ``port`` 0 means not at all."""

    port: int = 0
    addr: str = "127.0.0.1"

    @property
    def enabled(self) -> bool:
        """True when a port is set."""
        return self.port > 0


def metrics_target(environ: Mapping[str, str] | None = None) -> MetricsTarget:
    """``METRICS_PORT`` / ``METRICS_ADDR`` from the environment; :class:`ConfigError` naming the
    variable when a value is not a port number (0-65535) or an IP address."""
    env = os.environ if environ is None else environ
    raw = env.get(_PORT_VAR, "").strip()
    try:
        port = int(raw) if raw else 0
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise ConfigError(_PORT_VAR, raw, ["empty or 0 (off)", "1..65535"], "the port /metrics is served on")
    addr = env.get(_ADDR_VAR, "").strip() or "127.0.0.1"
    try:
        ipaddress.ip_address(addr)
    except ValueError:
        raise ConfigError(_ADDR_VAR, addr, ["127.0.0.1", "0.0.0.0", "an IP address"]) from None
    return MetricsTarget(port, addr)


class MergedCollector(Collector):
    """The metrics of several registries as one: families of the same name are joined."""

    def __init__(self, registries: Iterable[CollectorRegistry] = ()) -> None:
        self.registries = list(registries)

    def add(self, registry: CollectorRegistry) -> None:
        """Serve ``registry`` too (e.g. a service instance started later)."""
        self.registries.append(registry)

    def collect(self) -> Iterator[Metric]:
        merged: dict[str, Metric] = {}
        seen: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
        for registry in list(self.registries):
            for family in registry.collect():
                into = merged.get(family.name)
                if into is None:
                    into = merged[family.name] = Metric(
                        family.name, family.documentation, family.type, family.unit
                    )
                for sample in family.samples:
                    key = (sample.name, tuple(sorted(sample.labels.items())))
                    if key not in seen:  # the same series twice (e.g. build info): keep the first
                        seen.add(key)
                        into.samples.append(sample)
        yield from merged.values()


@dataclass
class MetricsEndpoint:
    """A running ``/metrics`` server; :meth:`close` stops it."""

    server: WSGIServer
    thread: Thread
    collector: MergedCollector
    """Add a registry here to serve it too (``cdb run`` adds each service's as it starts)."""

    @property
    def port(self) -> int:
        """The port actually bound (useful when asked for port 0 in tests)."""
        return int(self.server.server_address[1])

    def close(self) -> None:
        """Stop serving and release the port."""
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def serve_metrics(target: MetricsTarget, *registries: CollectorRegistry) -> MetricsEndpoint | None:
    """Serve ``registries`` on ``target`` in a daemon thread (``None`` when it is off).

    A port already in use is a :class:`ConfigError` naming ``METRICS_PORT``.
    """
    if not target.enabled:
        return None
    return _serve(target.addr, target.port, registries)


def serve_metrics_on(addr: str, port: int, *registries: CollectorRegistry) -> MetricsEndpoint:
    """Serve on ``addr:port`` (``port`` 0: any free port; tests read :attr:`MetricsEndpoint.port`)."""
    return _serve(addr, port, registries)


def _serve(addr: str, port: int, registries: Iterable[CollectorRegistry]) -> MetricsEndpoint:
    merged = MergedCollector(registries)
    holder = CollectorRegistry(auto_describe=False)
    holder.register(merged)
    try:
        server, thread = start_http_server(port, addr, registry=holder)
    except OSError as exc:
        raise ConfigError(_PORT_VAR, str(port), ["a free port"], f"{addr}:{port}: {exc.strerror}") from None
    return MetricsEndpoint(server, thread, merged)
