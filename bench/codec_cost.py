"""Codec cost per message, in memory (no Redis): every path, every topic, plus the msgspec floor.

Three operations, each timed over ``n`` distinct messages per round:

- ``from_fields``: a stream entry as redis-py returns it (bytes names and values) to a message,
  what every consuming service does per input;
- ``decode``: a Pub/Sub JSON body to a message;
- ``encode``: ``encode`` (the Pub/Sub body) plus ``to_fields`` (the stream entry) of a message,
  what ``Publisher`` does per output.

Cases: legacy, Pydantic lenient, Pydantic strict, shadow mode as ``codec_for`` builds it for a
Pydantic service with ``CONTRACT_SHADOW=true`` (lenient primary, legacy shadow), the same with
``CONTRACT_SHADOW_SAMPLE=1/10``, contract v2.0 (exact decimal strings, a service whose code and
output are v2.0), and msgspec
(:mod:`bench.msgspec_mirror`) on the same wire forms: the entry joined by the same
:func:`core.codec.fields.scan_fields` and decoded once, the body decoded directly, and an
encode of the body plus one value per field.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import msgspec

from bench.machine import QuietGate, fixtures_frozen
from bench.messages import built, values
from bench.msgspec_mirror import STRUCTS
from bench.stats import Figure
from core.codec import Codec, CodecMode, codec_for_mode, shadow_codec
from core.codec.fields import scan_fields
from core.topics import Topic
from core.versions.codec import VersionedCodec

__all__ = ["CASES", "OPERATIONS", "measure_codecs"]

SHADOW_SAMPLED = "shadow 1/10 (lenient + legacy)"
CASES = (
    "legacy",
    "pydantic lenient",
    "pydantic strict",
    "shadow (lenient + legacy)",
    "pydantic v2.0 (decimal)",
    SHADOW_SAMPLED,
    "msgspec",
)
OPERATIONS = ("from_fields", "decode", "encode")
MAX_BYTES = 65_536

_V2 = dict.fromkeys(Topic, "v2.0")

Costs = dict[tuple[str, str, str], Figure]
"""(case, topic, operation) -> microseconds per message."""


def _codecs() -> dict[str, Codec]:
    # Each case is a codec mode as a service would run it (core.codec.codec_for_mode).
    lenient, legacy = codec_for_mode(CodecMode.LENIENT), codec_for_mode(CodecMode.LEGACY)
    return {
        "legacy": legacy,
        "pydantic lenient": lenient,
        "pydantic strict": codec_for_mode(CodecMode.STRICT),
        "shadow (lenient + legacy)": shadow_codec(lenient, codec_for_mode(CodecMode.LEGACY)),
        # A service whose code and output are v2.0 (exact decimals), reading v2.0 entries: the cost
        # of exactness, beside strict v1.0 (same checks, binary floats).
        "pydantic v2.0 (decimal)": VersionedCodec(
            codec_for_mode(CodecMode.STRICT), writes=_V2, own=_V2, max_bytes=MAX_BYTES
        ),
        # CONTRACT_SHADOW_SAMPLE=1/10: every tenth message decoded twice (here by count: the rows
        # pass no entry id; on a stream the choice is a crc32 of the id, made inline: no dearer).
        SHADOW_SAMPLED: shadow_codec(lenient, codec_for_mode(CodecMode.LEGACY), sample=0.1),
    }


class _Msgspec:
    """The msgspec floor for one topic, on the same wire forms as the codecs."""

    def __init__(self, topic: Topic) -> None:
        struct = STRUCTS[topic]
        self.decoder = msgspec.json.Decoder(struct)
        self.encoder = msgspec.json.Encoder()
        self.names = struct.__struct_fields__
        self.struct = struct

    def from_fields(self, fields: Any) -> Any:
        document = scan_fields(fields, MAX_BYTES)[1]
        assert document is not None
        return self.decoder.decode(document)

    def decode(self, raw: bytes) -> Any:
        return self.decoder.decode(raw)

    def encode(self, message: Any) -> Any:
        enc = self.encoder.encode
        return enc(message), {name: enc(getattr(message, name)).decode() for name in self.names}


def _per_message_us(run: Callable[[], object], n: int) -> float:
    start = time.perf_counter()
    run()
    return (time.perf_counter() - start) / n * 1e6


def _round(costs: Costs, codecs: dict[str, Codec], topic: Topic, n: int) -> None:
    producer = codecs["pydantic strict"]
    messages = built(producer, topic, n)
    entries = [{k.encode(): v.encode() for k, v in producer.to_fields(topic, m).items()} for m in messages]
    bodies = [producer.encode(topic, m) for m in messages]

    def add(case: str, operation: str, run: Callable[[], object]) -> None:
        with fixtures_frozen():
            costs.setdefault((case, topic.value, operation), Figure()).add(_per_message_us(run, n))

    for case, codec in codecs.items():
        own = built(codec, topic, n)
        ins, docs = entries, bodies
        if isinstance(codec, VersionedCodec):  # it reads what it writes: the v2.0 wire forms
            ins = [{k.encode(): v.encode() for k, v in codec.to_fields(topic, m).items()} for m in own]
            docs = [codec.encode(topic, m) for m in own]
        from_fields, decode = codec.from_fields, codec.decode
        encode, to_fields = codec.encode, codec.to_fields
        add(case, "from_fields", lambda ff=from_fields, ins=ins: [ff(topic, e) for e in ins])
        add(case, "decode", lambda d=decode, docs=docs: [d(topic, b) for b in docs])
        add(case, "encode", lambda e=encode, t=to_fields, own=own: [(e(topic, m), t(topic, m)) for m in own])
    floor = _Msgspec(topic)
    structs = [floor.decode(b) for b in bodies]
    add("msgspec", "from_fields", lambda: [floor.from_fields(e) for e in entries])
    add("msgspec", "decode", lambda: [floor.decode(b) for b in bodies])
    add("msgspec", "encode", lambda: [floor.encode(s) for s in structs])


def measure_codecs(n: int, rounds: int, gate: QuietGate | None = None) -> Costs:
    """Microseconds per message for every (case, topic, operation), ``rounds`` samples each
    (each round of a topic starts once ``gate`` finds the machine quiet)."""
    codecs = _codecs()
    for topic in Topic:  # warm-up: first calls build caches (schemas, templates)
        for codec in codecs.values():
            message = codec.build(topic, values(topic, 0))
            codec.from_fields(topic, codec.to_fields(topic, message))
    costs: Costs = {}
    for _ in range(rounds):
        for topic in Topic:
            if gate is not None:
                gate.wait()
            _round(costs, codecs, topic, n)
    return costs
