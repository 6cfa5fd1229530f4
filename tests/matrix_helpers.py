"""Deliberately broken codecs for the matrix tests: proof that the matrix can fail.

``RenamedPriceOrder`` is the legacy ``Order`` after a careless refactor that reads
the price from a renamed key (``limit_price``) with ``.get``: no error anywhere,
every order just loses its reference price, and the paper venue rejects it. Only
the comparison with the baseline can catch that. It reaches a run through the
pipeline's ``codec_factory`` injection point, never through production code.

``ClockFilledMarketData`` is the seed's lenient default (a trade without a time gets the
reader's clock): with the ``mixed`` input set it silences a symbol, and the matrix says so.

``RewritingCodec`` is a careless serialiser: one field of one topic written wrong, no error
anywhere and no other trade changed (``reworded_signals``, ``unsimulated_results``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Self

from core.codec import Codec, Decoded, FieldMap, Message, RawFieldMap, codec_for
from core.codec.fields import encode_field_map
from core.settings import ServiceSettings
from core.topics import CodecPath, Profile, ServiceName, Topic
from core.utils.clock import now_ms
from migration.legacy import Order
from services.pipeline_control import CodecFactory


class RenamedPriceOrder(Order):
    """Legacy ``Order`` whose ``from_dict`` reads ``limit_price`` instead of ``price``."""

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        """As the broken refactor has it: a renamed key, silently ``None``."""
        return cls(
            order_id=data["order_id"],
            signal_id=data["signal_id"],
            symbol=data["symbol"],
            side=data["side"],
            order_type=data["order_type"],
            quantity=float(data["quantity"]),
            price=data.get("limit_price"),
        )


class RenamedPriceCodec:
    """The shipped legacy codec, except that orders are decoded with :class:`RenamedPriceOrder`."""

    def __init__(self, inner: Codec) -> None:
        self._inner = inner

    @property
    def path(self) -> CodecPath:
        return self._inner.path

    @property
    def profile(self) -> Profile | None:
        return self._inner.profile

    def _swap(self, topic: Topic, decoded: Decoded) -> Decoded:
        if topic is not Topic.ORDERS:
            return decoded
        return Decoded(RenamedPriceOrder.from_dict(self._inner.as_dict(topic, decoded.message)))

    def decode(self, topic: Topic, raw: bytes, *, entry_id: bytes | str | None = None) -> Decoded:
        return self._swap(topic, self._inner.decode(topic, raw, entry_id=entry_id))

    def from_fields(
        self, topic: Topic, fields: RawFieldMap, *, entry_id: bytes | str | None = None
    ) -> Decoded:
        return self._swap(topic, self._inner.from_fields(topic, fields, entry_id=entry_id))

    def encode(self, topic: Topic, message: Message) -> bytes:
        return self._inner.encode(topic, message)

    def to_fields(self, topic: Topic, message: Message) -> FieldMap:
        return self._inner.to_fields(topic, message)

    def build(self, topic: Topic, values: Mapping[str, Any]) -> Message:
        return self._inner.build(topic, values)

    def as_dict(self, topic: Topic, message: Message) -> dict[str, Any]:
        return self._inner.as_dict(topic, message)


def broken_legacy_execution(service: ServiceName, settings: ServiceSettings) -> Codec:
    """Codec factory: the shipped codecs, but a legacy execution decodes orders with the broken class."""
    codec = codec_for(settings)
    if service is ServiceName.EXECUTION and codec.path is CodecPath.LEGACY:
        return RenamedPriceCodec(codec)
    return codec


class ClockFilledMarketData(RenamedPriceCodec):
    """The shipped codec, except that market data without a timestamp (missing or null) gets the
    reader's clock, as the seed's lenient default ``int(time.time())`` did (in ms here)."""

    def _swap(self, topic: Topic, decoded: Decoded) -> Decoded:
        return decoded

    def from_fields(self, topic: Topic, fields: RawFieldMap, **options: Any) -> Decoded:
        if topic is Topic.MARKET_DATA:
            values = {(k.decode() if isinstance(k, bytes) else k): v for k, v in fields.items()}
            if values.get("timestamp") in (None, b"null", "null"):
                fields = {**values, "timestamp": str(now_ms())}
        return self._inner.from_fields(topic, fields, **options)


def clock_filled_market_data(service: ServiceName, settings: ServiceSettings) -> Codec:
    """Codec factory: every Pydantic lenient consumer fills a trade's missing time with its clock."""
    codec = codec_for(settings)
    if codec.path is CodecPath.PYDANTIC and codec.profile is Profile.LENIENT:
        return ClockFilledMarketData(codec)
    return codec


class RewritingCodec(RenamedPriceCodec):
    """The shipped codec, except that ``topic``'s messages go on the stream with ``values`` in place
    of theirs: the service's own state and the database are untouched, only what it publishes."""

    def __init__(self, inner: Codec, topic: Topic, values: Mapping[str, Any]) -> None:
        super().__init__(inner)
        self._topic, self._values = topic, values

    def _swap(self, topic: Topic, decoded: Decoded) -> Decoded:
        return decoded

    def to_fields(self, topic: Topic, message: Message) -> FieldMap:
        fields = self._inner.to_fields(topic, message)
        return {**fields, **encode_field_map(self._values)} if topic is self._topic else fields


def _pydantic_rewriting(service: ServiceName, topic: Topic, values: Mapping[str, Any]) -> CodecFactory:
    def factory(name: ServiceName, settings: ServiceSettings) -> Codec:
        codec = codec_for(settings)
        if name is service and codec.path is CodecPath.PYDANTIC:
            return RewritingCodec(codec, topic, values)
        return codec

    return factory


reworded_signals = _pydantic_rewriting(ServiceName.SIGNAL, Topic.SIGNALS, {"reason": "reworded"})
"""Codec factory: a Pydantic signal publishes every signal with another ``reason`` (orders unchanged)."""

unsimulated_results = _pydantic_rewriting(ServiceName.EXECUTION, Topic.ORDER_RESULTS, {"simulated": False})
"""Codec factory: a Pydantic execution publishes its paper fills as real ones (stored rows unchanged)."""
