"""Transport throughput against the real Redis: publish forms and the consumer loop per path.

Run: ``.venv/bin/python -m bench.transport [--n 20000] [--rounds 3]``. Uses its own key
prefix on ``CDB_BENCH_REDIS_URL`` (default ``redis://127.0.0.1:6379/13``) and deletes
every key it made. Prints a table and replaces the "## Transport (issue 3)" section of
BENCHMARKS.md (other sections are left as they are).

Every publish form encodes with the same codec (Pydantic, market_data), so the rows
differ only in how the bytes reach Redis:

- naive loop: the seed's ``redis.publish(...)`` then ``redis.xadd(...)`` per message,
  two round trips each;
- ``publish_message``: one pipeline round trip per message (blocking client);
- ``Publisher.publish``: one round trip per message (asyncio, what services call);
- ``Publisher.publish_many``: one round trip per chunk of 1,000 messages.

The consumer rows time ``StreamConsumer.poll_once`` (XREADGROUP COUNT 500, decode
every entry with the path's codec, a no-op handler, one XACK per batch) over a
stream of v1.0 messages.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import redis
import redis.asyncio as aioredis

from core.codec import Codec, Decoded, build_codec
from core.redis import Publisher, StreamConsumer, connect_async, connect_sync, publish_message
from core.topics import CodecPath, KeySpace, Profile, ServiceName, Topic

REDIS_URL = os.environ.get("CDB_BENCH_REDIS_URL", "redis://127.0.0.1:6379/13")
BENCHMARKS = Path(__file__).resolve().parent.parent / "BENCHMARKS.md"
SECTION = "## Transport (issue 3)"
TOPIC = Topic.MARKET_DATA
PUBLISH_TARGET = 20.0
CONSUME_TARGET = 50_000.0


def _messages(codec: Codec, n: int) -> list[Any]:
    return [
        codec.build(
            TOPIC,
            {
                "symbol": "BTC/USDT",
                "price": 50_000.5 + i / 100,
                "volume": 0.25,
                "side": "BUY" if i % 2 else "SELL",
                "venue": "mexc",
                "timestamp": 1_767_225_600_000 + i,
            },
        )
        for i in range(n)
    ]


def _clean(client: redis.Redis, keys: KeySpace) -> None:
    batch = list(client.scan_iter(match=keys.all_keys_pattern(), count=1_000))
    if batch:
        client.unlink(*batch)


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


async def _atimed(fn: Callable[[], Awaitable[None]]) -> float:
    start = time.perf_counter()
    await fn()
    return time.perf_counter() - start


def bench_naive(client: redis.Redis, codec: Codec, messages: list[Any], keys: KeySpace) -> float:
    """The seed's loop: PUBLISH, then XADD, two round trips per message."""
    channel, stream = keys.channel(TOPIC), keys.stream(TOPIC)

    def run() -> None:
        for m in messages:
            client.publish(channel, codec.encode(TOPIC, m))
            client.xadd(stream, codec.to_fields(TOPIC, m))  # type: ignore[arg-type]

    return len(messages) / _timed(run)


def bench_publish_message(client: redis.Redis, codec: Codec, messages: list[Any], keys: KeySpace) -> float:
    """``publish_message`` per message: one pipelined round trip each."""

    def run() -> None:
        for m in messages:
            publish_message(client, TOPIC, m, codec=codec, keys=keys)

    return len(messages) / _timed(run)


async def bench_publish(client: aioredis.Redis, codec: Codec, messages: list[Any], keys: KeySpace) -> float:
    """``Publisher.publish`` per message (asyncio)."""
    publisher = Publisher(client, codec, keys=keys, service=ServiceName.WS)

    async def run() -> None:
        for m in messages:
            await publisher.publish(TOPIC, m)

    return len(messages) / await _atimed(run)


async def bench_publish_many(
    client: aioredis.Redis, codec: Codec, messages: list[Any], keys: KeySpace
) -> float:
    """``Publisher.publish_many`` over the whole list (one round trip per 1,000)."""
    publisher = Publisher(client, codec, keys=keys, service=ServiceName.WS)

    async def run() -> None:
        await publisher.publish_many(TOPIC, messages)

    return len(messages) / await _atimed(run)


async def _filled_consumer(
    client: aioredis.Redis, codec: Codec, n: int, keys: KeySpace, *, fenced: bool, batch_size: int
) -> StreamConsumer:
    producer_codec = build_codec(CodecPath.PYDANTIC, Profile.STRICT)
    await Publisher(client, producer_codec, keys=keys, service=ServiceName.WS).publish_many(
        TOPIC, _messages(producer_codec, n)
    )
    lease = keys.lease(ServiceName.SIGNAL, 0) if fenced else None
    if lease is not None:
        await client.set(lease, "bench")  # held by this consumer for the whole run
    consumer = StreamConsumer(
        client,
        topic=TOPIC,
        service=ServiceName.SIGNAL,
        codec=codec,
        keys=keys,
        instance="bench",
        batch_size=batch_size,
        block_ms=10,
        lease=lease,
    )
    await consumer.ensure_group()
    return consumer


async def bench_consume(
    client: aioredis.Redis, codec: Codec, n: int, keys: KeySpace, *, fenced: bool = False
) -> float:
    """Read + decode + ack ``n`` stream entries with ``codec``; the stream is filled first.
    ``fenced``: holding a partition lease, so every read and ack runs in the lease-checking
    script (:mod:`core.redis.fence`), as a partitioned service's do."""
    consumer = await _filled_consumer(client, codec, n, keys, fenced=fenced, batch_size=500)

    async def run() -> None:
        done = 0
        while done < n:
            # As run() polls: each batch's XACK goes with the next read (one round trip a batch).
            done += await consumer.poll_once(_noop, carry_ack=True)
        await consumer.flush_acks()  # the last batch's ack, owed to the next read: inside the clock

    return n / await _atimed(run)


async def bench_reads(client: aioredis.Redis, n: int, keys: KeySpace, *, fenced: bool) -> float:
    """Reads per second of ``n`` reads of one new entry each (``GroupIO.read_new(1)``, nothing
    decoded or acked): the cost of one read, plain ``XREADGROUP`` or the fenced script (lease
    check, own-pending check after the newest id received, ``XREADGROUP >``)."""
    consumer = await _filled_consumer(client, _NullCodec(), n, keys, fenced=fenced, batch_size=1)  # type: ignore[arg-type]

    async def run() -> None:
        for _ in range(n):
            await consumer.io.read_new(1, None)

    return n / await _atimed(run)


async def _noop(decoded: Decoded, entry_id: str) -> None:
    return None


def bench_encode_only(codec: Codec, messages: list[Any]) -> float:
    """The codec alone: ``encode`` + ``to_fields`` per message, no Redis (reference row)."""

    def run() -> None:
        for m in messages:
            codec.encode(TOPIC, m)
            codec.to_fields(TOPIC, m)

    return len(messages) / _timed(run)


def bench_decode_only(codec: Codec, n: int) -> float:
    """The codec alone: ``from_fields`` on stream entries as redis-py returns them (reference row)."""
    producer = build_codec(CodecPath.PYDANTIC, Profile.STRICT)
    entries = [
        {k.encode(): v.encode() for k, v in producer.to_fields(TOPIC, m).items()}
        for m in _messages(producer, n)
    ]

    def run() -> None:
        for fields in entries:
            codec.from_fields(TOPIC, fields)

    return n / _timed(run)


def _median(samples: list[float]) -> float:
    return statistics.median(samples)


async def run_all(n: int, rounds: int) -> list[tuple[str, float]]:
    """Every row of the table: (name, median messages/s over ``rounds``)."""
    sync = connect_sync(REDIS_URL)
    client = connect_async(REDIS_URL)
    codec = build_codec(CodecPath.PYDANTIC, Profile.STRICT)
    small = _messages(codec, max(500, n // 10))
    full = _messages(codec, n)
    samples: dict[str, list[float]] = {}

    def add(name: str, value: float) -> None:
        samples.setdefault(name, []).append(value)

    consume_codecs = {
        "consume: legacy": build_codec(CodecPath.LEGACY),
        "consume: pydantic lenient": build_codec(CodecPath.PYDANTIC, Profile.LENIENT),
        "consume: pydantic strict": codec,
    }
    try:
        for _ in range(rounds):
            keys = KeySpace(f"cdbbench:{uuid.uuid4().hex[:8]}:")
            try:
                add("publish: naive loop (publish + xadd)", bench_naive(sync, codec, small, keys))
                add("publish: publish_message", bench_publish_message(sync, codec, small, keys))
                add("publish: Publisher.publish", await bench_publish(client, codec, small, keys))
                add("publish: Publisher.publish_many", await bench_publish_many(client, codec, full, keys))
                _clean(sync, keys)
                add("reference: codec encode only (no Redis)", bench_encode_only(codec, full))
                ceiling = await bench_consume(client, _NullCodec(), n, keys)  # type: ignore[arg-type]
                add("reference: consume with a no-op codec (transport only)", ceiling)
                _clean(sync, keys)
                for name, consume_codec in consume_codecs.items():
                    add(name, await bench_consume(client, consume_codec, n, keys))
                    _clean(sync, keys)
                    reference = name.replace("consume:", "reference: from_fields only,")
                    add(reference, bench_decode_only(consume_codec, n))
            finally:
                _clean(sync, keys)
    finally:
        sync.close()
        await client.aclose()
    return [(name, _median(values)) for name, values in samples.items()]


def _rtt_us() -> float:
    client = connect_sync(REDIS_URL)
    try:
        client.ping()
        times = [_timed(client.ping) for _ in range(500)]
        return statistics.median(times) * 1e6
    finally:
        client.close()


def _us(rate: float) -> float:
    return 1e6 / rate


def _verdict(value: float, target: float) -> str:
    return "met" if value >= target else "missed"


def render(rows: list[tuple[str, float]], n: int, rounds: int) -> str:
    """The BENCHMARKS.md section (markdown)."""
    by_name = dict(rows)
    naive = by_name["publish: naive loop (publish + xadd)"]
    rtt = _rtt_us()
    lines = [
        SECTION,
        "",
        f"`.venv/bin/python -m bench.transport --n {n} --rounds {rounds}`: median of {rounds} rounds, "
        f"real Redis on loopback, {os.cpu_count()} CPU(s), Python {platform.python_version()}, "
        f"redis PING round trip {rtt:.0f} us (median). Publish rows encode with the Pydantic codec "
        "(market_data); naive-loop and per-message rows publish n/10 messages, the rest n. "
        "Reference rows run the codec alone, without Redis.",
        "",
        "| case | messages/s | us/message | vs naive loop |",
        "|---|---:|---:|---:|",
    ]
    for name, rate in rows:
        ratio = f"{rate / naive:.1f}x" if name.startswith("publish") else ""
        lines.append(f"| {name} | {rate:,.0f} | {_us(rate):.1f} | {ratio} |")
    many = by_name["publish: Publisher.publish_many"]
    encode = by_name["reference: codec encode only (no Redis)"]
    lines += ["", "Where a message's time goes (us, from the medians above):", ""]
    lines.append(
        f"- publish_many: {_us(many):.1f} = codec encode {_us(encode):.1f} + transport "
        f"{_us(many) - _us(encode):.1f} (pack, write, read two replies); naive loop: {_us(naive):.1f} "
        f"(two round trips + encode)."
    )
    for path in ("legacy", "pydantic lenient", "pydantic strict"):
        total, decode = by_name[f"consume: {path}"], by_name[f"reference: from_fields only, {path}"]
        lines.append(
            f"- consume {path}: {_us(total):.1f} = codec from_fields {_us(decode):.1f} + transport "
            f"{_us(total) - _us(decode):.1f} (XREADGROUP parse, handler call, XACK, counting)."
        )
    strict, lenient = by_name["consume: pydantic strict"], by_name["consume: pydantic lenient"]
    speedup = many / naive
    lines += [
        "",
        f"Targets: publish_many >= {PUBLISH_TARGET:.0f}x the naive loop: **{speedup:.1f}x** "
        f"({_verdict(speedup, PUBLISH_TARGET)}); consumer >= {CONSUME_TARGET:,.0f} msg/s on the Pydantic "
        f"path: strict **{strict:,.0f}** ({_verdict(strict, CONSUME_TARGET)}), "
        f"lenient **{lenient:,.0f}** ({_verdict(lenient, CONSUME_TARGET)}).",
        "",
        GAP_NOTE,
    ]
    return "\n".join(lines)


GAP_NOTE = """\
Why a target can be missed here, from the profiles (cProfile and py-spy of these loops):

- The transport's own share is the "transport" part above. publish_many packs by hand,
  writes one 1,000-message chunk at a time and packs the next chunk while Redis works
  on the previous one; what is left is packing (~3 us) and reading two replies
  (~1 us each) per message. The consumer's ceiling shows in the no-op codec row.
- The rest is the codec, outside the transport: `to_fields` encodes every field with
  `json.JSONEncoder.encode` (~1 us per field) and `from_fields` decodes every field with
  `json.loads` (~1.5 us per field); the lenient profile validates a variant model and
  then builds the strict one.
- The naive loop is bound by the loopback round trip, which on this shared 2-core
  machine swings between ~35 and ~130 us while other test suites run, so the ratio
  moves with it (the publish_many rate moves much less).
- One-off experiment (not committed): with `core/codec/fields.py` decoding each field
  with `pydantic_core.from_json` and encoding scalars with `pydantic_core.to_json`/
  `repr`, the same bench gave consumer strict ~69,500 msg/s, lenient ~45,800, legacy
  ~58,000 and publish_many ~86,000 msg/s. That change belongs to the codec (the JSON
  parser's error messages change; NaN must still be refused on encode), so it is
  proposed rather than made here.
"""


class _NullCodec:
    """Decodes nothing: measures the consumer loop without a codec (reference row)."""

    path = CodecPath.PYDANTIC
    profile = Profile.STRICT
    _decoded = Decoded(None)

    def from_fields(self, topic: Topic, fields: Any, *, entry_id: Any = None) -> Decoded:
        return self._decoded


def write_section(section: str, path: Path = BENCHMARKS) -> None:
    """Replace (or append) the transport section of ``path``, leaving other sections alone."""
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.strip() == SECTION), None)
    if start is None:
        body = text.rstrip("\n") + "\n\n" + section
    else:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        keep_after = "\n".join(lines[end:])
        before = "\n".join(lines[:start]).rstrip("\n")
        body = (before + "\n\n" if before else "") + section + ("\n" + keep_after if keep_after else "")
    path.write_text(body.rstrip("\n") + "\n", encoding="utf-8")


def main() -> None:
    """Run the benchmark, print the table, update BENCHMARKS.md."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--n", type=int, default=20_000, help="messages per case and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    args = parser.parse_args()
    rows = asyncio.run(run_all(args.n, args.rounds))
    section = render(rows, args.n, args.rounds)
    print(section)
    if not args.no_write:
        write_section(section)
        print(f"updated {BENCHMARKS}")


if __name__ == "__main__":
    main()
