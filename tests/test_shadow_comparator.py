"""The out-of-band shadow comparator (``cdb shadow``) and in-process sampling, on the real Redis."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from hypothesis import given
from hypothesis import strategies as st

from cdb.cli.status import instance_row
from cdb.cli.status_table import WIDE, status_table
from cdb.comparator import run_comparator
from core.codec import Decoded, build_codec, encode_field_map
from core.codec.shadow_sample import ShadowSampler
from core.errors import ConfigError
from core.metrics import ServiceMetrics
from core.redis import Publisher
from core.settings import ServiceSettings
from core.status import LiveState, StatusReporter, read_live_states
from core.topics import CodecPath, KeySpace, Profile, ServiceName, Topic
from core.utils.clock import now_ms
from core.versions.convert import convert
from migration.comparator import ShadowComparator, comparator_group
from migration.cutover import check_cutover
from migration.legacy_codec import LegacyCodec
from migration.shadow import DECODE_FIELD, ShadowCodec
from tests.ops_helpers import reporting, service_settings
from tests.service_procs import free_port, scrape
from tests.transport_helpers import consume_until, make_messages, poll_until, valid_values

pytestmark = pytest.mark.integration

PYDANTIC = build_codec(CodecPath.PYDANTIC, Profile.LENIENT)


class VolumeDoublingLegacyCodec(LegacyCodec):
    """Test only: a legacy path that reads ``volume`` twice as large (a deliberate decode bug)."""

    def from_fields(self, topic: Topic, fields: Any, *, entry_id: Any = None) -> Decoded:
        decoded = super().from_fields(topic, fields, entry_id=entry_id)
        decoded.message.volume *= 2
        return decoded


def _shadow(metrics: ServiceMetrics, sample: float = 1.0) -> ShadowCodec:
    return ShadowCodec(
        PYDANTIC, VolumeDoublingLegacyCodec(65_536), on_compare=metrics.count_shadow, sample=sample
    )


async def _publish_mixed(redis: aioredis.Redis, keys: KeySpace, n: int) -> int:
    """``n`` valid trades, plus entries each path judges differently; returns the entry count."""
    publisher = Publisher(redis, PYDANTIC, keys=keys, service=ServiceName.WS)
    await publisher.publish_many(Topic.MARKET_DATA, make_messages(PYDANTIC, Topic.MARKET_DATA, n))
    stream = keys.stream(Topic.MARKET_DATA)
    odd = [
        # Not JSON: both paths refuse it (agreement), the service dead-letters it.
        {b"symbol": b"{nope", b"price": b"1"},
        # Legacy-shaped (no api_version): the lenient path fills it, legacy reads it.
        encode_field_map({k: v for k, v in valid_values(Topic.MARKET_DATA, 7).items() if k != "api_version"}),
        # A lower-case symbol the legacy path takes and the contract refuses: a <decode> mismatch.
        encode_field_map({**valid_values(Topic.MARKET_DATA, 8), "api_version": "v1.0", "symbol": "btc"}),
    ]
    for fields in odd:
        await redis.xadd(stream, fields)  # type: ignore[arg-type]
    return n + len(odd)


def _comparator(
    redis: aioredis.Redis, keys: KeySpace, metrics: ServiceMetrics, **options: Any
) -> ShadowComparator:
    return ShadowComparator(
        redis,
        service=ServiceName.SIGNAL,
        codec=_shadow(metrics),
        keys=keys,
        instance="cmp-1",
        metrics=metrics,
        block_ms=10,
        **options,
    )


async def _drain(comparator: ShadowComparator, expected: int) -> None:
    async def poll() -> None:
        for p in comparator.partitions:
            await comparator.poll_once(p)

    await comparator.ensure_groups()
    await poll_until(poll, lambda: comparator.compared >= expected)


async def test_comparator__counts_the_same_mismatches_as_in_process_shadow(
    redis_async: aioredis.Redis, keys: KeySpace
) -> None:
    total = await _publish_mixed(redis_async, keys, 40)
    inproc_metrics = ServiceMetrics(ServiceName.SIGNAL)
    inproc = _shadow(inproc_metrics)
    await consume_until(
        redis_async,
        keys,
        inproc,
        lambda _: inproc.compared[Topic.MARKET_DATA] >= total,
        instance="signal-1",
        metrics=inproc_metrics,
        block_ms=10,
    )

    out_metrics = ServiceMetrics(ServiceName.SIGNAL)
    comparator = _comparator(redis_async, keys, out_metrics)
    await _drain(comparator, total)

    assert comparator.codec.mismatch_counts() == inproc.mismatch_counts()
    assert inproc.mismatch_counts()["market_data"]["volume"] >= 40  # the bug is seen on every valid trade
    assert DECODE_FIELD in inproc.mismatch_counts()["market_data"]
    mine, theirs = out_metrics.snapshot(), inproc_metrics.snapshot()
    for key in ("shadow_compared", "shadow_mismatches", "shadow_by_field"):
        assert mine[key] == theirs[key], key
    # The comparator acts on nothing: the two dead letters (not JSON, refused symbol) are the service's.
    assert await redis_async.xlen(keys.dlq(Topic.MARKET_DATA)) == 2
    assert mine["dead_letters"] == 0


async def test_comparator__reads_in_its_own_group_and_leaves_the_services_group_alone(
    redis_async: aioredis.Redis, keys: KeySpace
) -> None:
    total = await _publish_mixed(redis_async, keys, 10)
    comparator = _comparator(redis_async, keys, ServiceMetrics(ServiceName.SIGNAL))
    await _drain(comparator, total)
    groups = {g["name"].decode(): g for g in await redis_async.xinfo_groups(keys.stream(Topic.MARKET_DATA))}
    assert set(groups) == {comparator_group(keys, ServiceName.SIGNAL)}
    mine = groups[comparator_group(keys, ServiceName.SIGNAL)]
    assert mine["pending"] == 0  # every compared entry acknowledged
    assert mine["lag"] == 0
    assert await comparator.backlog() == 0


async def test_comparator__partition_aware_reads_only_the_partitions_it_is_given(
    redis_async: aioredis.Redis, keys: KeySpace
) -> None:
    parts = keys.with_partitions(2)
    for p, n in ((0, 7), (1, 11)):
        fields = [
            encode_field_map({**valid_values(Topic.MARKET_DATA, i), "api_version": "v1.0"}) for i in range(n)
        ]
        for f in fields:
            await redis_async.xadd(parts.stream(Topic.MARKET_DATA, p), f)  # type: ignore[arg-type]
    everything = _comparator(redis_async, parts, ServiceMetrics(ServiceName.SIGNAL))
    await _drain(everything, 18)
    assert everything.compared == 18
    metrics = ServiceMetrics(ServiceName.SIGNAL)
    second = ShadowComparator(
        redis_async,
        service=ServiceName.SIGNAL,
        codec=_shadow(metrics),
        keys=parts,
        instance="cmp-2",
        metrics=metrics,
        partitions=[1],
        block_ms=10,
        group_start="0",
    )
    # Same group: the first comparator acknowledged everything, nothing is left for the second.
    await second.ensure_groups()
    assert await second.poll_once(1) == 0
    assert second.readers.keys() == {1}


async def test_shadow_sample__one_in_ten_compares_about_a_tenth_by_entry_id(
    redis_async: aioredis.Redis, keys: KeySpace
) -> None:
    n = 2_000
    await Publisher(redis_async, PYDANTIC, keys=keys, service=ServiceName.WS).publish_many(
        Topic.MARKET_DATA, make_messages(PYDANTIC, Topic.MARKET_DATA, n)
    )
    ids = [i for i, _ in await redis_async.xrange(keys.stream(Topic.MARKET_DATA))]
    picked = [i for i in ids if ShadowSampler(0.1).take(i)]
    assert 140 <= len(picked) <= 260  # ~200; a hash, not a counter
    assert picked == [i for i in ids if ShadowSampler(0.1).take(i.decode())]  # bytes or str: same choice

    metrics = ServiceMetrics(ServiceName.SIGNAL)
    codec = _shadow(metrics, sample=0.1)
    handled = await consume_until(
        redis_async,
        keys,
        codec,
        lambda h: len(h.messages) >= n,
        instance="signal-1",
        metrics=metrics,
        block_ms=10,
    )
    assert codec.compared[Topic.MARKET_DATA] == len(picked)  # exactly the entries the hash picks
    assert metrics.snapshot()["shadow_mismatches"] == len(picked)  # each compared one shows the bug
    assert len(handled.messages) == n  # the service still handles every message


async def test_run_comparator__reports_as_a_comparator_under_the_checked_service(
    redis_async: aioredis.Redis, redis_url: str, keys: KeySpace, tmp_path: Path
) -> None:
    total = await _publish_mixed(redis_async, keys, 30)
    env = tmp_path / "signal.env"
    port = free_port()
    env.write_text(
        f"REDIS_URL={redis_url}\nKEY_PREFIX={keys.prefix}\nINSTANCE=signal-7\nUSE_PYDANTIC_CONTRACTS=true\n"
        f"CONSUMER_BLOCK_MS=20\nMETRICS_PORT={port}\n"
    )
    stop = asyncio.Event()
    task = asyncio.create_task(run_comparator(ServiceName.SIGNAL, stop, env_file=env, status_interval_s=0.1))
    try:
        async with asyncio.timeout(20):
            while True:
                states = [s for s in await read_live_states(redis_async, keys) if s.is_comparator]
                if states and states[0].counts.get("shadow_compared", 0) >= total:
                    break
                await asyncio.sleep(0.05)
        # /metrics on the env file's port, like every setting of the file (not only the flags).
        assert "cdb_shadow_compared_total" in await asyncio.to_thread(scrape, port)
    finally:
        stop.set()
        compared = await task
    state = states[0]
    assert (state.service, state.instance, state.path, state.shadow) == (
        "signal",
        "shadow-signal-7",
        "pydantic",
        True,
    )
    row = instance_row(state, now_ms())
    assert row["handled"] == compared == total
    # Real codecs on both paths: the only difference is the entry only the legacy path takes.
    assert row["shadow_by_field"] == {f"market_data.{DECODE_FIELD}": 1}
    assert not [s for s in await read_live_states(redis_async, keys) if s.is_comparator]  # withdrawn


async def test_run_comparator__later_version_entries_are_counted_as_such_not_as_mismatches(
    redis_async: aioredis.Redis, redis_url: str, keys: KeySpace, tmp_path: Path
) -> None:
    """v2.0 market data the Pydantic path reads and the legacy path cannot: in the comparator's
    live status (and ``cdb status``) a later version, by version; no ``<decode>`` mismatch."""
    publisher = Publisher(redis_async, PYDANTIC, keys=keys, service=ServiceName.WS)
    await publisher.publish_many(Topic.MARKET_DATA, make_messages(PYDANTIC, Topic.MARKET_DATA, 5))
    for i in range(3):
        v2 = convert(
            Topic.MARKET_DATA, PYDANTIC.build(Topic.MARKET_DATA, valid_values(Topic.MARKET_DATA, i)), "v2.0"
        )
        await redis_async.xadd(keys.stream(Topic.MARKET_DATA), encode_field_map(v2.model_dump(mode="json")))  # type: ignore[arg-type]
    env = tmp_path / "signal.env"
    env.write_text(
        f"REDIS_URL={redis_url}\nKEY_PREFIX={keys.prefix}\nINSTANCE=signal-8\nUSE_PYDANTIC_CONTRACTS=true\n"
        "CONSUMER_BLOCK_MS=20\n"
    )
    stop = asyncio.Event()
    task = asyncio.create_task(run_comparator(ServiceName.SIGNAL, stop, env_file=env, status_interval_s=0.1))
    try:
        async with asyncio.timeout(20):
            while True:
                states = [s for s in await read_live_states(redis_async, keys) if s.is_comparator]
                if states and states[0].counts.get("shadow_compared", 0) >= 8:
                    break
                await asyncio.sleep(0.05)
    finally:
        stop.set()
        await task
    row = instance_row(states[0], now_ms())
    assert (row["shadow_mismatches"], row["shadow_by_field"]) == (0, {})
    assert (row["shadow_later_version"], row["shadow_later_by_version"]) == (3, {"market_data.v2.0": 3})
    cell = status_table("t", [row], wide=True).columns[WIDE.index("shadow mismatches")]._cells[0]
    assert cell == "0; later version, not compared: 3 (market_data.v2.0=3)"


async def _comparator_state(
    redis: aioredis.Redis, keys: KeySpace, by_field: dict[str, int], later: dict[str, int] | None = None
) -> None:
    state = LiveState(
        service="signal",
        instance="shadow-signal-1",
        path="legacy",  # compares from the legacy path: it still publishes nothing
        profile="lenient",
        shadow=True,
        version="test",
        started_ms=now_ms() - 1_000,
        counts={"shadow_compared": 10, "shadow_by_field": by_field, "shadow_later_by_version": later or {}},
        role="comparator",
    )
    await StatusReporter(redis, keys, lambda: state).report_once()


async def test_cutover__reads_comparator_mismatches_and_never_counts_it_as_an_instance(
    redis_async: aioredis.Redis, keys: KeySpace
) -> None:
    async with contextlib.AsyncExitStack() as stack:
        for s in ServiceName:
            settings = service_settings(s, keys, f"{s.value}-1", use_pydantic_contracts=True)
            await stack.enter_async_context(reporting(redis_async, settings))
        await _comparator_state(redis_async, keys, {"market_data.volume": 3})
        findings = {f.name: f for f in (await check_cutover(redis_async, keys)).findings}
    assert findings["instances"].ok, findings["instances"].summary
    assert not findings["shadow"].ok
    assert findings["shadow"].data == {"signal/shadow-signal-1": {"market_data.volume": 3}}


async def test_cutover__later_version_messages_are_shown_as_evidence_but_are_no_mismatch(
    redis_async: aioredis.Redis, keys: KeySpace
) -> None:
    async with contextlib.AsyncExitStack() as stack:
        for s in ServiceName:
            settings = service_settings(s, keys, f"{s.value}-1", use_pydantic_contracts=True)
            await stack.enter_async_context(reporting(redis_async, settings))
        await _comparator_state(redis_async, keys, {}, later={"market_data.v2.0": 4})
        findings = {f.name: f for f in (await check_cutover(redis_async, keys)).findings}
    assert findings["shadow"].ok, findings["shadow"].summary
    assert findings["shadow"].data == {}
    assert (
        "later contract versions the legacy path cannot read (not compared, not mismatches): "
        "signal/shadow-signal-1: market_data.v2.0=4" in findings["shadow"].details
    )


async def test_cutover__a_service_with_only_a_comparator_has_no_instance(
    redis_async: aioredis.Redis, keys: KeySpace
) -> None:
    async with contextlib.AsyncExitStack() as stack:
        for s in (ServiceName.WS, ServiceName.RISK, ServiceName.EXECUTION):
            settings = service_settings(s, keys, f"{s.value}-1", use_pydantic_contracts=True)
            await stack.enter_async_context(reporting(redis_async, settings))
        await _comparator_state(redis_async, keys, {})
        report = await check_cutover(redis_async, keys)
    instances = next(f for f in report.findings if f.name == "instances")
    assert not instances.ok
    assert any(line.startswith("signal: no live instance") for line in instances.details)


@pytest.mark.parametrize(("text", "rate"), [("1", 1.0), ("0.1", 0.1), ("1/10", 0.1), (" 1/4", 0.25)])
def test_settings__shadow_sample_accepts_shares_and_fractions(text: str, rate: float) -> None:
    settings = ServiceSettings.load(ServiceName.SIGNAL, environ={"CONTRACT_SHADOW_SAMPLE": text})
    assert settings.contract_shadow_sample == pytest.approx(rate)


@pytest.mark.parametrize("text", ["0", "2", "-0.5", "1/0", "a/b", "nan"])
def test_settings__shadow_sample_outside_zero_to_one_is_a_config_error(text: str) -> None:
    with pytest.raises(ConfigError) as exc:
        ServiceSettings.load(ServiceName.SIGNAL, environ={"CONTRACT_SHADOW_SAMPLE": text})
    assert exc.value.variable == "CONTRACT_SHADOW_SAMPLE"


@given(
    rate=st.floats(min_value=1e-6, max_value=1.0),
    ms=st.integers(min_value=0, max_value=2**48),
    seq=st.integers(min_value=0, max_value=2**32),
)
def test_shadow_sampler__the_same_entry_is_always_or_never_picked(rate: float, ms: int, seq: int) -> None:
    entry = f"{ms}-{seq}"
    first = ShadowSampler(rate).take(entry)
    assert ShadowSampler(rate).take(entry.encode()) is first  # another instance, bytes or str
    if rate == 1.0:
        assert first


@pytest.mark.parametrize("rate", [0.5, 0.1, 0.01, 0.3, 2 / 3])
def test_shadow_sampler__pub_sub_bodies_without_ids_are_picked_every_1_over_rate(rate: float) -> None:
    sampler = ShadowSampler(rate)
    picked = sum(sampler.take(None) for _ in range(10_000))
    assert picked == int(10_000 * rate)  # floor(n * rate): never more than the share


async def _publish_trades(redis: aioredis.Redis, keys: KeySpace, n: int) -> None:
    await Publisher(redis, PYDANTIC, keys=keys, service=ServiceName.WS).publish_many(
        Topic.MARKET_DATA, make_messages(PYDANTIC, Topic.MARKET_DATA, n)
    )


async def test_comparator__reading_ahead_compares_every_entry_exactly_once_and_leaves_none_pending(
    redis_async: aioredis.Redis, keys: KeySpace
) -> None:
    await _publish_trades(redis_async, keys, 23)
    metrics = ServiceMetrics(ServiceName.SIGNAL)
    comparator = _comparator(redis_async, keys, metrics, batch_size=5)  # full batches: reads ahead
    stop = asyncio.Event()
    task = asyncio.create_task(comparator.run(stop))
    await poll_until(lambda: asyncio.sleep(0.01), lambda: comparator.compared >= 23)
    await _publish_trades(redis_async, keys, 10)  # more while it runs, in two full batches
    await poll_until(lambda: asyncio.sleep(0.01), lambda: comparator.compared >= 33)
    stop.set()
    await task
    assert comparator.compared == comparator.codec.compared[Topic.MARKET_DATA] == 33  # no entry twice
    snapshot = metrics.snapshot()
    assert (snapshot["shadow_compared"], snapshot["shadow_mismatches"]) == (33, 33)  # told per batch
    assert snapshot["shadow_by_field"] == {"market_data.volume": 33}
    group = (await redis_async.xinfo_groups(keys.stream(Topic.MARKET_DATA)))[0]
    assert (group["pending"], group["lag"]) == (0, 0)


async def test_comparator__entries_read_ahead_by_an_instance_that_died_are_compared_at_its_restart(
    redis_async: aioredis.Redis, keys: KeySpace
) -> None:
    await _publish_trades(redis_async, keys, 12)
    first = _comparator(redis_async, keys, ServiceMetrics(ServiceName.SIGNAL), batch_size=5)
    await first.ensure_groups()
    assert await first.poll_once(0) == 5  # a full batch: the next five were asked for ahead
    # It dies once the read ahead delivered its five to cmp-1: pending, never compared.
    async with asyncio.timeout(10):
        while (await redis_async.xinfo_groups(keys.stream(Topic.MARKET_DATA)))[0]["pending"] < 5:
            await asyncio.sleep(0.01)

    restarted = _comparator(redis_async, keys, ServiceMetrics(ServiceName.SIGNAL), batch_size=5)
    stop = asyncio.Event()
    task = asyncio.create_task(restarted.run(stop))
    await poll_until(lambda: asyncio.sleep(0.01), lambda: restarted.compared >= 7)
    stop.set()
    await task
    assert first.compared + restarted.compared == 12  # each entry compared once, none lost
    group = (await redis_async.xinfo_groups(keys.stream(Topic.MARKET_DATA)))[0]
    assert (group["pending"], group["lag"]) == (0, 0)


async def test_comparator__a_clean_stop_compares_what_it_read_ahead_and_leaves_nothing_pending(
    redis_async: aioredis.Redis, keys: KeySpace
) -> None:
    await _publish_trades(redis_async, keys, 12)
    comparator = _comparator(redis_async, keys, ServiceMetrics(ServiceName.SIGNAL), batch_size=5)
    await comparator.ensure_groups()
    assert await comparator.poll_once(0) == 5  # the next five asked for ahead
    stop = asyncio.Event()
    stop.set()
    await comparator.run(stop)  # stops at once, after settling the read ahead
    assert comparator.compared == 10
    group = (await redis_async.xinfo_groups(keys.stream(Topic.MARKET_DATA)))[0]
    assert (group["pending"], group["lag"]) == (0, 2)


async def test_comparator__caught_up_it_reads_at_most_once_a_pace_and_compares_every_entry(
    redis_async: aioredis.Redis, keys: KeySpace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A trickle of entries (one every 5 ms) is compared in a few larger batches, not a read and
    a wake per entry that would take CPU from the checked service."""
    comparator = _comparator(redis_async, keys, ServiceMetrics(ServiceName.SIGNAL), pace_ms=100)
    reads: list[int] = []
    read_new = type(comparator.readers[0]).read_new

    async def counted(io: Any, count: int, block_ms: int | None) -> Any:
        entries = await read_new(io, count, block_ms)
        if entries:
            reads.append(len(entries))
        return entries

    monkeypatch.setattr(type(comparator.readers[0]), "read_new", counted)
    stop = asyncio.Event()
    task = asyncio.create_task(comparator.run(stop))
    try:
        for _ in range(60):  # ~0.3 s
            await _publish_trades(redis_async, keys, 1)
            await asyncio.sleep(0.005)
        await poll_until(lambda: asyncio.sleep(0.01), lambda: comparator.compared >= 60, timeout_s=10)
    finally:
        stop.set()
        await task
    assert comparator.compared == 60
    assert sum(reads) == 60
    assert len(reads) <= 8  # ~0.3 s / 0.1 s, and the first entry's own read
