"""The matrix's input sets: the recorded trades alone, or with other producers' messages mixed in.

``clean`` is the recording as ws publishes it. ``mixed`` adds, at fixed points of the
same run (the baseline's too), what a real migration also carries (DESIGN rules 4-6,
as issue 14 settles them):

- **legacy-shaped market data** (:data:`LEGACY_MARKET_DATA` trades of ``MIX/USDT``, no
  ``api_version``, as a legacy feeder of another venue writes them): read by legacy and
  lenient signal, dead-lettered by a strict one. Their price is so high that the one
  signal they fire is sized below one lot and rejected by risk: visible (a signal, a
  rejection), but no position, so no other decision depends on it;
- **legacy-shaped signals** (no ``api_version``/``timestamp``; ``MIX/USDT`` again, rejected
  by risk the same way) and **legacy-shaped orders** (``order_id`` ``mix-ord-*``, each
  filled on its own by the paper venue): accepted by legacy and lenient consumers (the
  timestamp filled from the stream entry id), dead-lettered by strict ones;
- **market data without a timestamp** (missing, and ``null``), of a real symbol
  (``BTC/USDT``): dead-lettered on every path and profile. Filled with any clock it would
  look newer than the real trades after it and silence the symbol (issue 14, item 1);
- **malformed entries** (:mod:`harness.matrix.malformed`, one of each kind per consumed
  topic): dead-lettered on every path and profile.

Each injected message affects nothing but itself, so :func:`inputs_expectation` can state
exactly what a mix must do with them; ``harness.matrix.verdict`` checks it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from core.codec import build_codec, encode_field_map
from core.errors import ContractError
from core.topics import CodecPath, Profile, ServiceName, Topic
from harness.matrix.malformed import BURST_TOPICS, malformed_entries
from harness.matrix.mixes import Mix, Variant
from services.pipeline_control import PipelineHook, PipelineRun

__all__ = [
    "INJECTED_ORDER_PREFIX",
    "InputExpectation",
    "InputSet",
    "Kind",
    "MixedInputs",
    "injected_entries",
    "inputs_expectation",
    "refused_by_reader",
]

INJECTED_ORDER_PREFIX = "mix-ord-"
"""``order_id`` prefix of the injected legacy-shaped orders (their results are told apart by it)."""
MIX_SYMBOL = "MIX/USDT"
LEGACY_MARKET_DATA = 24  # > the strategy's default window (20): one signal fires
LEGACY_SIGNALS = 3
LEGACY_ORDERS = 3
_TS = 1_767_225_600_000
_MIX_PRICE = 2e9  # max_order_notional / price < one lot: risk rejects, no position


class InputSet(StrEnum):
    """Which messages the matrix feeds a run (``cdb matrix --inputs``)."""

    CLEAN = "clean"
    """The recorded trades only."""
    MIXED = "mixed"
    """The recorded trades plus legacy-shaped, timestamp-less and malformed messages."""


class Kind(StrEnum):
    """One kind of injected message."""

    LEGACY_MARKET_DATA = "legacy_market_data"
    LEGACY_SIGNAL = "legacy_signal"
    LEGACY_ORDER = "legacy_order"
    NO_TIMESTAMP = "market_data_without_timestamp"
    MALFORMED = "malformed"


_TOPIC = {
    Kind.LEGACY_MARKET_DATA: Topic.MARKET_DATA,
    Kind.LEGACY_SIGNAL: Topic.SIGNALS,
    Kind.LEGACY_ORDER: Topic.ORDERS,
    Kind.NO_TIMESTAMP: Topic.MARKET_DATA,
}
_CONSUMER = {s.consumes: s for s in ServiceName if s.consumes is not None}


def _legacy_market_data(i: int) -> dict[str, Any]:
    return {
        "symbol": MIX_SYMBOL,
        "price": _MIX_PRICE * (1 + i / 1000),  # rising 2.4 % over the window: a BUY signal
        "volume": 1.0,
        "side": "BUY",
        "venue": "legacy-feeder",
        "timestamp": _TS + i,
    }


def _legacy_signal(i: int) -> dict[str, Any]:
    return {
        "signal_id": f"mix-sig-{i}",
        "symbol": MIX_SYMBOL,
        "side": "BUY",
        "price": _MIX_PRICE,
        "strength": 0.5,
        "reason": "legacy producer",
    }


def _legacy_order(i: int) -> dict[str, Any]:
    return {
        "order_id": f"{INJECTED_ORDER_PREFIX}{i}",
        "signal_id": f"mix-sig-order-{i}",
        "symbol": MIX_SYMBOL,
        "side": "BUY" if i % 2 == 0 else "SELL",
        "order_type": "MARKET",
        "quantity": 1.0 + i,
        "price": 100.0,
    }


def _no_timestamp(null: bool) -> dict[str, Any]:
    values: dict[str, Any] = {
        "api_version": "v1.0",
        "symbol": "BTC/USDT",
        "price": 94_000.0,
        "volume": 0.01,
        "side": "BUY",
        "venue": "mexc",
    }
    if null:
        values["timestamp"] = None
    return values


def injected_entries(
    kind: Kind, max_bytes: int = 65_536
) -> list[tuple[Topic, dict[str, str] | dict[bytes, bytes]]]:
    """The field maps of ``kind`` with their topics, ready for ``XADD`` (the same every time)."""
    if kind is Kind.LEGACY_MARKET_DATA:
        return [
            (Topic.MARKET_DATA, encode_field_map(_legacy_market_data(i))) for i in range(LEGACY_MARKET_DATA)
        ]
    if kind is Kind.LEGACY_SIGNAL:
        return [(Topic.SIGNALS, encode_field_map(_legacy_signal(i))) for i in range(LEGACY_SIGNALS)]
    if kind is Kind.LEGACY_ORDER:
        return [(Topic.ORDERS, encode_field_map(_legacy_order(i))) for i in range(LEGACY_ORDERS)]
    if kind is Kind.NO_TIMESTAMP:
        return [(Topic.MARKET_DATA, encode_field_map(_no_timestamp(null))) for null in (False, True)]
    return [(t, f) for t in BURST_TOPICS for _, f in malformed_entries(t, per_kind=1, max_bytes=max_bytes)]


def refused_by_reader(kind: Kind, max_bytes: int = 65_536) -> int:
    """How many of ``kind``'s entries the Pydantic lenient reader refuses."""
    reader = build_codec(CodecPath.PYDANTIC, Profile.LENIENT, max_bytes=max_bytes)
    refused = 0
    for topic, fields in injected_entries(kind, max_bytes):
        try:
            reader.from_fields(topic, fields)
        except ContractError:
            refused += 1
    return refused


def _symbol(fields: Mapping[Any, Any]) -> str:
    raw = fields.get("symbol", fields.get(b"symbol", b'""'))
    text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else str(raw)
    return text.strip('"')


@dataclass
class MixedInputs(PipelineHook):
    """Injects the ``mixed`` input set: market data a third of the way through publishing,
    signals and orders at two thirds; records every stream id per kind."""

    max_bytes: int = 65_536
    injected: dict[Kind, list[tuple[Topic, str]]] = field(default_factory=dict)

    async def after_batch(self, run: PipelineRun, published: int, total: int) -> None:
        first = [Kind.LEGACY_MARKET_DATA, Kind.NO_TIMESTAMP, Kind.MALFORMED]
        second = [Kind.LEGACY_SIGNAL, Kind.LEGACY_ORDER]
        for kinds, fraction in ((first, 1 / 3), (second, 2 / 3)):
            if kinds[0] not in self.injected and published >= min(total, total * fraction):
                for kind in kinds:
                    await self._inject(run, kind)

    async def before_drain(self, run: PipelineRun) -> None:
        for kind in Kind:  # too few batches for the fixed points: inject what is left now
            if kind not in self.injected:
                await self._inject(run, kind)

    async def _inject(self, run: PipelineRun, kind: Kind) -> None:
        entries = injected_entries(kind, self.max_bytes)
        pipe = run.redis.pipeline(transaction=False)
        for topic, fields in entries:
            partition = run.keys.partition(_symbol(fields))
            pipe.xadd(run.keys.stream(topic, partition), fields)  # type: ignore[arg-type]  # redis-py: invariant dict
        ids = await pipe.execute()
        self.injected[kind] = [
            (t, i.decode() if isinstance(i, bytes) else str(i))
            for (t, _), i in zip(entries, ids, strict=True)
        ]

    def ids(self, topic: Topic, kinds: tuple[Kind, ...] = tuple(Kind)) -> list[str]:
        """Stream ids of the injected entries of ``topic`` (of ``kinds``)."""
        return [i for k in kinds for t, i in self.injected.get(k, []) if t is topic]


@dataclass(frozen=True)
class InputExpectation:
    """What a mix must do with the ``mixed`` input set, stated before it runs."""

    refused: dict[Kind, bool]
    """For each kind: whether its consumer dead-letters it (else it reads it)."""
    reason: str

    def accepts(self, kind: Kind) -> bool:
        """Whether the consumer of ``kind`` reads it (legacy or lenient)."""
        return not self.refused[kind]

    def dead_letters(self, hook: MixedInputs) -> dict[Topic, int]:
        """Dead letters per topic the injected messages must cause."""
        out = dict.fromkeys(Topic, 0)
        for kind, ids in hook.injected.items():
            if self.refused[kind]:
                for topic, _ in ids:
                    out[topic] += 1
        return out

    def parked_ids(self, hook: MixedInputs, topic: Topic) -> tuple[list[str], list[str]]:
        """Stream ids of the injected ``topic`` entries that must be dead-lettered, and of those
        that must not."""
        refused = [k for k in Kind if self.refused[k]]
        accepted = [k for k in Kind if not self.refused[k]]
        return hook.ids(topic, tuple(refused)), hook.ids(topic, tuple(accepted))


_LEGACY_KINDS = (Kind.LEGACY_MARKET_DATA, Kind.LEGACY_SIGNAL, Kind.LEGACY_ORDER)


def inputs_expectation(mix: Mix) -> InputExpectation:
    """How ``mix`` must treat each injected kind: legacy-shaped messages are dead-lettered by a
    strict consumer and read by every other; timestamp-less market data and malformed entries
    are dead-lettered by every consumer."""
    refused = {kind: mix.variant(_CONSUMER[_TOPIC[kind]]) is Variant.STRICT for kind in _LEGACY_KINDS}
    refused[Kind.NO_TIMESTAMP] = refused[Kind.MALFORMED] = True
    named = [f"{k.value} by strict {_CONSUMER[_TOPIC[k]].value}" for k in _LEGACY_KINDS if refused[k]]
    reason = (
        "mixed inputs: timestamp-less market data and malformed entries dead-lettered on every path; "
        + ("dead-lettered: " + ", ".join(named) if named else "legacy-shaped messages read by every consumer")
    )
    return InputExpectation(refused, reason)
