"""The contract version each service's code is written against: one row per service, here.

The codec hands a service's code its own version of every message it reads (converting whatever
version arrived) and builds what the code produces in that version (converting it, on the way
out, to ``PRODUCE_VERSION_<TOPIC>``). Moving a service's code to a new version is a change to
its code *and* its row below, reviewed together; nothing else chooses it.

* **ws** builds ``market_data`` in the version it writes (:data:`AS_WRITTEN`): its code makes
  both shapes (:meth:`services.ws.trades.Trade.as_values`), so a v2.0 trade carries MEXC's
  decimal strings exact and a v1.0 one is never built as v2.0 and converted down.
* **execution** is on v2.0: the order it reads, the fill it computes, the row it stores and the
  result it builds are exact decimals end to end (the result is converted down to what
  ``PRODUCE_VERSION_ORDER_RESULTS`` names, v1.0 by default).
* **signal** and **risk** stay on v1.0: the strategy's moves in basis points and risk's
  notional / price sizing are ratios, inexact in decimals too, and a rewrite of their arithmetic
  could change which signals fire and which sizes are ordered (the trades must not change); a
  v2.0 message reaches them as floats (exact for at most 15 significant digits).

The Pydantic path honours this: the legacy path reads and writes v1.0, and a shadow codec
compares the two paths' v1.0 readings, so under either the code gets v1.0 of the topic it reads
(each service's code accepts both; :func:`own_version` says which one it gets). What a service
builds in shadow mode is built as without it: shadow mode changes no output (e.g. execution's
``ordered_quantity`` and exact decimals).
"""

from __future__ import annotations

from collections.abc import Mapping

from core.topics import ServiceName, Topic
from core.versions.declaration import BASE_VERSION

__all__ = ["AS_WRITTEN", "OWN_VERSIONS", "own_version", "own_versions"]

AS_WRITTEN = "as-written"
"""A produced topic the code builds in whatever version the service writes (nothing converted)."""

OWN_VERSIONS: Mapping[ServiceName, Mapping[Topic, str]] = {
    ServiceName.WS: {Topic.MARKET_DATA: AS_WRITTEN},
    ServiceName.SIGNAL: {},
    ServiceName.RISK: {},
    ServiceName.EXECUTION: {Topic.ORDERS: "v2.0", Topic.ORDER_RESULTS: "v2.0"},
}
"""Per service, the version its code reads or builds per topic (absent: v1.0)."""


def own_versions(service: ServiceName | None, writes: Mapping[Topic, str]) -> dict[Topic, str]:
    """The versions ``service``'s code works with per topic, given what it ``writes`` per topic."""
    table = OWN_VERSIONS.get(service, {}) if service is not None else {}
    return {
        topic: writes.get(topic, BASE_VERSION) if version == AS_WRITTEN else version
        for topic, version in table.items()
    }


def own_version(codec: object, topic: Topic) -> str:
    """The version of ``topic`` that ``codec`` hands the code and builds (v1.0 for a codec that is
    not versioned: the legacy path, or the shadow codec's primary when it is)."""
    codec = getattr(codec, "primary", codec)  # a shadow codec builds with its primary
    own = getattr(codec, "own", None)
    return str(own(topic)) if callable(own) else BASE_VERSION
