"""``cdb dlq catch-up`` and ``cdb dlq replay --only-newer`` on letters a real strict consumer parked.

Market data of two symbols in two partitions; a strict signal consumer dead-letters the
legacy-shaped ones (no ``api_version``) and handles the v1.0 ones between them.
"""

from __future__ import annotations

import asyncio
import functools
import json
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis

from core.codec import build_codec, encode_field_map
from core.domain.contracts import API_VERSION
from core.redis import StreamConsumer, dlq_catchup
from core.redis.acl import OPERATOR, REPLAY
from core.redis.dead_letters import DeadLetter
from core.redis.dlq_lock import replay_lock
from core.redis.topology import ensure_topology
from core.topics import CodecPath, KeySpace, Profile, ServiceName, Topic
from services.signal.strategy import MomentumStrategy
from tests.ops_helpers import cdb, cdb_json, reporting, service_settings
from tests.support.replay_lock import overtaken_after_first
from tests.test_redis_acl_live import temporary_acl_users
from tests.transport_helpers import Collector, poll_until

pytestmark = pytest.mark.integration

STRICT = build_codec(CodecPath.PYDANTIC, Profile.STRICT)
LENIENT = build_codec(CodecPath.PYDANTIC, Profile.LENIENT)
SYMBOLS = ("BTC/USDT", "DOGE/USDT")  # partitions 1 and 0 of 2


def _trade(symbol: str, ts: int, *, legacy: bool) -> dict[str, str]:
    values: dict[str, Any] = {
        "symbol": symbol,
        "price": 100.0 + ts % 1000,
        "volume": 1.0,
        "side": "BUY",
        "venue": "mexc",
        "timestamp": ts,
    }
    if not legacy:
        values["api_version"] = API_VERSION
    return encode_field_map(values)


def _consumer(redis: aioredis.Redis, keys: KeySpace, codec: Any, partition: int) -> StreamConsumer:
    return StreamConsumer(
        redis,
        topic=Topic.MARKET_DATA,
        service=ServiceName.SIGNAL,
        codec=codec,
        keys=keys,
        instance="signal-1",
        partition=partition,
        block_ms=10,
    )


async def _incident(
    redis: aioredis.Redis, keys: KeySpace, plan: list[tuple[str, int, bool]], *, ids: list[str] | None = None
) -> None:
    """XADD ``plan`` (symbol, ts, legacy-shaped; under ``ids`` if given) and let a strict consumer
    read every partition."""
    for n, (symbol, ts, legacy) in enumerate(plan):
        await redis.xadd(
            keys.stream(Topic.MARKET_DATA, keys.partition(symbol)),
            _trade(symbol, ts, legacy=legacy),  # type: ignore[arg-type]
            id=ids[n] if ids else "*",
        )
    for partition in range(keys.partitions):
        consumer = _consumer(redis, keys, STRICT, partition)
        await consumer.ensure_group()
        # Until the group has read and acknowledged everything (a poll that returns nothing, e.g.
        # a reclaim pass, does not mean the stream is drained).
        while await consumer.poll_once(Collector()) or not await _drained(redis, consumer.io.stream):
            pass


async def _drained(redis: aioredis.Redis, stream: str) -> bool:
    (group,) = await redis.xinfo_groups(stream)
    return bool(group["lag"] == 0 and group["pending"] == 0)


def _opts(redis_url: str, keys: KeySpace) -> list[str]:
    return ["--redis-url", redis_url, "--prefix", keys.prefix]


async def _cdb(*args: str, expect: int = 0) -> Any:
    return await asyncio.to_thread(cdb_json, *args, expect=expect)


@pytest.fixture
async def split(keys: KeySpace, redis_async: aioredis.Redis) -> KeySpace:
    """The test's key space with two partitions (recorded as the pipeline's topology)."""
    spaced = keys.with_partitions(2)
    await ensure_topology(redis_async, spaced)
    return spaced


async def test_dlq_catch_up__rewinds_each_partition_to_its_first_letter_and_the_consumer_reads_in_order(
    redis_async: aioredis.Redis, redis_url: str, split: KeySpace
) -> None:
    keys = split
    assert keys.partition(SYMBOLS[0]) != keys.partition(SYMBOLS[1])
    # Per symbol: 2 v1.0 trades, 3 legacy ones (dead-lettered), 1 v1.0 trade handled after them.
    plan = []
    for symbol in SYMBOLS:
        plan += [(symbol, 1, False), (symbol, 2, False), (symbol, 3, True), (symbol, 4, True)]
        plan += [(symbol, 5, True), (symbol, 6, False)]
    await _incident(redis_async, keys, [(s, 1_767_225_600_000 + t, legacy) for s, t, legacy in plan])
    assert await redis_async.xlen(keys.dlq(Topic.MARKET_DATA)) == 6

    done = await _cdb("dlq", "catch-up", "--topic", "market_data", *_opts(redis_url, keys))
    assert done["applied"] is True
    assert done["letters"] == 6
    for part in done["partitions"]:
        entries = await redis_async.xrange(part["stream"])
        first_letter = entries[2][0].decode()
        assert len(part["letters"]) == 3
        assert part["handled_again"] == 1  # the v1.0 trade after the letters
        ms, seq = (int(x) for x in first_letter.split("-"))
        assert part["rewind_to"] == (f"{ms}-{seq - 1}" if seq else f"{ms - 1}-{2**64 - 1}")
        group = next(g for g in await redis_async.xinfo_groups(part["stream"]))
        assert group["last-delivered-id"].decode() == part["rewind_to"]
        assert group["lag"] == 4  # exact: entries read counted up to the rewind point

    # The lenient consumer reads the originals, in order, then the trade it had handled.
    for partition, symbol in sorted((keys.partition(s), s) for s in SYMBOLS):
        seen = Collector()
        consumer = _consumer(redis_async, keys, LENIENT, partition)
        await poll_until(lambda c=consumer, h=seen: c.poll_once(h), lambda h=seen: len(h.messages) == 4)
        assert [m.timestamp % 1000 for m in seen.messages] == [3, 4, 5, 6]
        assert {m.symbol for m in seen.messages} == {symbol}

    marks = await redis_async.hgetall(keys.dlq_replayed(Topic.MARKET_DATA))
    letters = await redis_async.xrange(keys.dlq(Topic.MARKET_DATA))
    assert {k.decode(): v.decode() for k, v in marks.items()} == {
        i.decode(): f[b"stream_id"].decode() for i, f in letters
    }
    again = await _cdb("dlq", "catch-up", "--topic", "market_data", *_opts(redis_url, keys))
    assert again["letters"] == 0  # resolved letters are not caught up twice


async def test_dlq_catch_up__an_entry_id_parked_in_one_partition_is_not_mistaken_for_another_partitions_entry(
    redis_async: aioredis.Redis, redis_url: str, split: KeySpace
) -> None:
    # Entry ids are unique per stream only: two partitions written in the same millisecond share
    # ids. Here DOGE's third letter has the id of the BTC trade handled after BTC's letters (6-0);
    # that trade is still handled again after the rewind (it was once counted as parked).
    btc, doge = SYMBOLS
    plan = [
        (btc, t, legacy)
        for t, legacy in ((1, False), (2, False), (3, True), (4, True), (5, True), (6, False))
    ]
    plan += [
        (doge, t, legacy)
        for t, legacy in ((1, False), (2, False), (3, True), (4, True), (6, True), (7, False))
    ]
    ids = [f"{t}-0" for _, t, _ in plan]
    await _incident(
        redis_async, split, [(s, 1_767_225_600_000 + t, legacy) for s, t, legacy in plan], ids=ids
    )
    done = await _cdb("dlq", "catch-up", "--topic", "market_data", *_opts(redis_url, split))
    by_stream = {p["stream"]: p for p in done["partitions"]}
    for symbol, handled in ((btc, "6-0"), (doge, "7-0")):
        part = by_stream[split.stream(Topic.MARKET_DATA, split.partition(symbol))]
        assert part["rewind_to"] == f"2-{2**64 - 1}"  # just before 3-0
        assert part["read_from"] == "3-0"  # what the table shows
        assert len(part["letters"]) == 3
        assert part["handled_again"] == 1, (symbol, handled, part)

    letters = [DeadLetter.from_entry(i, f) for i, f in await redis_async.xrange(split.dlq(Topic.MARKET_DATA))]
    assert {(x.partition, x.stream_id) for x in letters} == {
        (split.partition(btc), i) for i in ("3-0", "4-0", "5-0")
    } | {(split.partition(doge), i) for i in ("3-0", "4-0", "6-0")}


async def test_dlq_catch_up__refused_while_an_instance_of_the_consumer_reports_live_state(
    redis_async: aioredis.Redis, redis_url: str, keys: KeySpace
) -> None:
    await _incident(redis_async, keys, [("BTC/USDT", 1_767_225_600_001, True)])
    settings = service_settings(ServiceName.SIGNAL, keys, "signal-live")
    async with reporting(redis_async, settings):
        refused = await _cdb("dlq", "catch-up", "--topic", "market_data", *_opts(redis_url, keys), expect=1)
    assert "signal-live" in refused["refused"]
    assert refused["applied"] is False
    group = (await redis_async.xinfo_groups(keys.stream(Topic.MARKET_DATA)))[0]
    assert group["last-delivered-id"] != b"0-0"  # untouched
    assert await redis_async.hlen(keys.dlq_replayed(Topic.MARKET_DATA)) == 0


async def test_dlq_replay__only_newer_replays_the_trades_the_strategy_would_count(
    redis_async: aioredis.Redis, redis_url: str, keys: KeySpace
) -> None:
    base = 1_767_225_600_000
    # BTC: its letters are older than a v1.0 trade handled after them (stale).
    # ETH: only letters, nothing newer on the stream (they would count).
    await _incident(
        redis_async,
        keys,
        [
            ("BTC/USDT", base + 1, True),
            ("BTC/USDT", base + 2, True),
            ("BTC/USDT", base + 3, False),
            ("ETH/USDT", base + 1, True),
            ("ETH/USDT", base + 2, True),
        ],
    )
    letters = {
        f[b"stream_id"].decode(): i.decode() for i, f in await redis_async.xrange(keys.dlq(Topic.MARKET_DATA))
    }
    assert len(letters) == 4
    opts = ["--topic", "market_data", "--all", *_opts(redis_url, keys)]
    length = await redis_async.xlen(keys.stream(Topic.MARKET_DATA))

    refused = await _cdb("dlq", "replay", *opts, expect=1)
    assert refused["refused"] is True
    assert refused["ignored"] == 2
    assert await redis_async.xlen(keys.stream(Topic.MARKET_DATA)) == length  # nothing written

    newer = await _cdb("dlq", "replay", *opts, "--only-newer")
    status = {o["entry_id"]: (o["status"], bool(o["ignored"])) for o in newer["outcomes"]}
    stale = [o for o in newer["outcomes"] if o["status"] == "withheld"]
    assert sorted(status.values()) == [("replayed", False)] * 2 + [("withheld", True)] * 2
    assert all("BTC/USDT" in o["ignored"] and "is older than" in o["ignored"] for o in stale)
    assert await redis_async.xlen(keys.stream(Topic.MARKET_DATA)) == length + 2
    marks = await redis_async.hgetall(keys.dlq_replayed(Topic.MARKET_DATA))
    assert {k.decode() for k in marks} == {
        o["entry_id"] for o in newer["outcomes"] if o["status"] == "replayed"
    }


async def test_dlq_catch_up__the_replay_acl_user_may_run_it_the_operator_may_not(
    redis_async: aioredis.Redis, redis_sync: Any, redis_url: str, keys: KeySpace
) -> None:
    # Moving a group's position decides what a consumer reads (forward would skip orders), so
    # it is the break-glass replay role's, not the everyday operator's (docs/security.md).
    await _incident(redis_async, keys, [("BTC/USDT", 1_767_225_600_001, True)])
    with temporary_acl_users(redis_sync, keys, redis_url) as users:
        refused = await asyncio.to_thread(
            cdb, "dlq", "catch-up", "--topic", "market_data", *_opts(users.urls[OPERATOR], keys)
        )
        assert refused.exit_code != 0
        done = await _cdb("dlq", "catch-up", "--topic", "market_data", *_opts(users.urls[REPLAY], keys))
    assert done["applied"] is True
    assert done["letters"] == 1
    group = (await redis_async.xinfo_groups(keys.stream(Topic.MARKET_DATA)))[0]
    assert group["last-delivered-id"].decode() == done["partitions"][0]["rewind_to"]


async def test_dlq_replay_and_catch_up__tables_say_what_would_be_ignored_and_what_was_rewound(
    redis_async: aioredis.Redis, redis_url: str, keys: KeySpace
) -> None:
    base = 1_767_225_600_000
    await _incident(redis_async, keys, [("BTC/USDT", base + 1, True), ("BTC/USDT", base + 2, False)])
    opts = _opts(redis_url, keys)
    replay = await asyncio.to_thread(cdb, "dlq", "replay", "--topic", "market_data", "--all", *opts)
    assert replay.exit_code == 1
    assert "stale: BTC/USDT trade at 1767225600001 is older than the trade at 1767225600002" in replay.output
    assert "1 of the replayable letters would be ignored by signal" in replay.output
    assert "refused: nothing written" in replay.output
    caught = await asyncio.to_thread(cdb, "dlq", "catch-up", "--topic", "market_data", *opts)
    assert caught.exit_code == 0, caught.output
    assert "1 dead letters will count when signal starts again" in caught.output
    assert "reads again from" in caught.output
    first = next(line for line in caught.output.splitlines() if "market_data" in line and "-0" in line)
    assert "18446744073709551615" not in first  # the first letter's id, not its predecessor


async def test_dlq_replay__trades_of_one_millisecond_count_as_the_strategy_counts_them(
    redis_async: aioredis.Redis, redis_url: str, keys: KeySpace
) -> None:
    # The strategy applies every distinct trade of the symbol's newest millisecond (a sweep fills
    # several at once), ignoring only older trades (stale) and the same trade again (duplicate):
    # replay must not withhold the distinct ones as stale.
    base = 1_767_225_600_000
    stream = keys.stream(Topic.MARKET_DATA)

    def trade(ts: int, price: float, *, legacy: bool = True) -> dict[str, str]:
        return {**_trade("BTC/USDT", ts, legacy=legacy), "price": json.dumps(price)}

    entries = [trade(base, 100.0, legacy=False), trade(base, 101.0), trade(base, 102.0)]
    entries += [trade(base, 102.0), trade(base - 1, 103.0), trade(base, 100.0)]
    for fields in entries:
        await redis_async.xadd(stream, fields)  # type: ignore[arg-type]
    await _incident(redis_async, keys, [])
    letters = [i.decode() for i, _ in await redis_async.xrange(keys.dlq(Topic.MARKET_DATA))]
    assert len(letters) == 5

    opts = ["--topic", "market_data", "--all", *_opts(redis_url, keys)]
    dry = await _cdb("dlq", "replay", *opts, "--dry-run")
    verdicts = [(o["ignored"] or "counts").split(":")[0] for o in dry["outcomes"]]
    assert verdicts == ["counts", "counts", "duplicate", "stale", "duplicate"]

    # What the strategy does with the stream as signal reads it after the replay.
    length = await redis_async.xlen(stream)
    await _cdb("dlq", "replay", *opts, "--include-stale")
    read = [(i, f) for i, f in await redis_async.xrange(stream) if b"api_version" in f]
    assert len(read) == 1 + 5  # the v1.0 trade signal handled, then the replayed copies
    assert await redis_async.xlen(stream) == length + 5
    strategy = MomentumStrategy()
    outcomes = [strategy.decide(LENIENT.from_fields(Topic.MARKET_DATA, f).message) for _, f in read]
    assert [o.ignored.value if o.ignored else "counts" for o in outcomes[1:]] == verdicts


async def test_dlq_catch_up__lost_its_lock_after_one_partition__says_so_and_rewinds_no_more(
    redis_async: aioredis.Redis,
    redis_sync: redis.Redis,
    redis_url: str,
    split: KeySpace,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    keys = split
    plan = [(symbol, t, t == 3) for symbol in SYMBOLS for t in (1, 2, 3, 4)]
    await _incident(redis_async, keys, [(s, 1_767_225_600_000 + t, legacy) for s, t, legacy in plan])
    lock_key = keys.dlq_replay_lock(Topic.MARKET_DATA)
    # A short TTL instead of a 30-s pause: after the first partition is rewound, another replay
    # takes the lock, as after a pause past the TTL.
    monkeypatch.setattr(dlq_catchup, "replay_lock", functools.partial(replay_lock, ttl_ms=300))
    rewind, others = overtaken_after_first(dlq_catchup._ack_pending_from, redis_sync, keys, Topic.MARKET_DATA)
    monkeypatch.setattr(dlq_catchup, "_ack_pending_from", rewind)
    result = await asyncio.to_thread(
        cdb, "dlq", "catch-up", "--topic", "market_data", *_opts(redis_url, keys)
    )

    assert result.exit_code == 1, result.output
    assert "after rewinding 1 of 2 partitions; nothing more written" in result.output
    marks = await redis_async.hgetall(keys.dlq_replayed(Topic.MARKET_DATA))
    assert len(marks) == 1  # the first partition's letter only: the other stays parked
    assert redis_sync.get(lock_key).decode() == others[0].token  # the other's lock, untouched
    others[0].release()
