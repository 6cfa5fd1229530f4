"""One bad historical entry never stops a partition: the state rebuild skips what it cannot apply.

After a restart (or a move) a partition's business object is rebuilt from every entry its
group finished, dead-lettered ones included. An entry the object's ``replay`` raises for
is skipped, logged with its id and error, and counted (``replay_skipped`` in live status);
the rest is applied and the partition goes on handling new entries. A worker that still
ends with an error is started again and counted (``partition_worker_failures``).
"""

from __future__ import annotations

import asyncio
import json

import pytest
import redis.asyncio as aioredis

from cdb.cli.status import instance_row
from core.codec import Codec, Decoded, build_codec
from core.codec.registry import shadow_codec
from core.redis import StreamConsumer
from core.status import read_live_states
from core.topics import CodecPath, KeySpace, ServiceName, Topic
from core.utils.clock import now_ms
from services.partitions import replay_history
from services.risk.service import RiskService
from services.runtime import ServiceContext, run_consuming_service
from tests.delivery_helpers import drain, service_settings, signal_fields

pytestmark = pytest.mark.integration

CODEC = build_codec(CodecPath.PYDANTIC)
BROKEN = "sig-2"


def _consumer(client: aioredis.Redis, keys: KeySpace, instance: str, codec: Codec = CODEC) -> StreamConsumer:
    return StreamConsumer(
        client,
        topic=Topic.SIGNALS,
        service=ServiceName.RISK,
        codec=codec,
        keys=keys,
        instance=instance,
        block_ms=10,
    )


def _signal(i: int) -> dict[str, str]:
    return {**signal_fields(i), "timestamp": "1767225600000"}


async def _history(redis: aioredis.Redis, keys: KeySpace, codec: Codec = CODEC) -> list[str]:
    """Four signals (sig-1..sig-4) that a first consumer (``codec``) finished: the history a
    rebuild replays; their entry ids."""
    stream = keys.stream(Topic.SIGNALS)
    for i in range(1, 5):
        await redis.xadd(stream, _signal(i))
    old = _consumer(redis, keys, "old", codec)
    await old.ensure_group()

    async def finish(decoded: Decoded, entry_id: str) -> None:
        return None

    await old.poll_once(finish)
    return [raw_id.decode() for raw_id, _ in await redis.xrange(stream)]


class _ReplayBreaksOnOne(RiskService):
    """Risk whose rebuild raises for one signal: a stand-in for any entry ``replay`` cannot apply
    (the audit's was a signal dead-lettered ``handler_failed``, whose replay raised the same way)."""

    def replay(self, decoded: Decoded, entry_id: str) -> None:
        if decoded.message.signal_id == BROKEN:
            raise OverflowError("cannot convert float infinity to integer")
        super().replay(decoded, entry_id)


async def test_replay_history__an_entry_apply_raises_for_is_skipped_and_reported_and_the_rest_applied(
    redis_async: aioredis.Redis, keys: KeySpace
) -> None:
    ids = await _history(redis_async, keys)
    applied: list[str] = []
    skipped: list[tuple[str, str]] = []

    def apply(decoded: Decoded, entry_id: str) -> None:
        if decoded.message.signal_id == BROKEN:
            raise ValueError("cannot apply")
        applied.append(decoded.message.signal_id)

    count = await replay_history(
        _consumer(redis_async, keys, "new"),
        apply,
        lambda entry_id, exc: skipped.append((entry_id, repr(exc))),
    )

    assert applied == ["sig-1", "sig-3", "sig-4"]  # in order, past the one it could not apply
    assert count == 3
    assert skipped == [(ids[1], "ValueError('cannot apply')")]


async def test_replay_history__in_shadow_mode_compares_nothing_it_replays(
    redis_async: aioredis.Redis, keys: KeySpace
) -> None:
    # The shadow evidence counts messages the service handled: a rebuild re-reads history it
    # already compared, so counting it again inflated "compared" (540 against 183 handled after
    # one restart, seen by an outside review).
    compared: list[object] = []
    shadow = shadow_codec(CODEC, build_codec(CodecPath.LEGACY), lambda *report: compared.append(report))
    await _history(redis_async, keys, shadow)
    assert len(compared) == 4  # handled: compared once each
    applied: list[str] = []
    new = _consumer(redis_async, keys, "new", shadow)

    assert await replay_history(new, lambda decoded, _: applied.append(decoded.message.signal_id)) == 4

    assert applied == ["sig-1", "sig-2", "sig-3", "sig-4"]
    assert len(compared) == 4  # replayed, not compared again


async def test_a_restarted_risk__rebuilds_past_an_entry_its_replay_raises_for_and_handles_new_signals(
    redis_async: aioredis.Redis, keys: KeySpace, redis_url: str
) -> None:
    settings = service_settings(ServiceName.RISK, keys, redis_url, "pydantic-lenient")
    before = await drain(redis_async, settings, RiskService, [signal_fields(i) for i in (1, 2, 3)])
    assert before.letters == []
    rebuilt: list[RiskService] = []

    def make(ctx: ServiceContext) -> RiskService:
        rebuilt.append(_ReplayBreaksOnOne(ctx))
        return rebuilt[-1]

    # The restart: the same stream, one new signal, and sig-1 again (a second publish of it).
    after = await drain(redis_async, settings, make, [signal_fields(4), signal_fields(1)], timeout_s=15)

    assert [json.loads(f[b"order_id"]) for f in after.outputs[3:]] == ["ord-sig-4", "ord-sig-1"]
    engine = rebuilt[0].engine
    assert sorted(engine.positions) == ["S1/USDT", "S3/USDT", "S4/USDT"]  # sig-2's replay was skipped
    assert after.ctx.extra_counts["replay_skipped"] == 1
    assert after.ctx.extra_counts["orders"] == 1  # sig-1 was known from the rebuild: a duplicate
    assert after.live is not None
    assert instance_row(after.live, now_ms())["counts"]["replay_skipped"] == 1  # cdb status --json


async def test_a_worker_that_fails__is_started_again_and_counted_in_live_status(
    redis_async: aioredis.Redis, keys: KeySpace, redis_url: str
) -> None:
    settings = service_settings(ServiceName.RISK, keys, redis_url, "pydantic-lenient")
    ctx = ServiceContext.create(ServiceName.RISK, settings, redis_async)
    await redis_async.xadd(keys.stream(Topic.SIGNALS), signal_fields(1))
    built: list[int] = []

    def factory(partition_ctx: ServiceContext) -> RiskService:
        built.append(1)
        if len(built) == 1:
            raise RuntimeError("the first business object cannot be built")
        return RiskService(partition_ctx)

    stop = asyncio.Event()
    task = asyncio.create_task(
        run_consuming_service(RiskService(ctx), ctx, stop, status_interval_s=0.1, factory=factory)
    )
    try:
        async with asyncio.timeout(15):
            while not await redis_async.xlen(keys.stream(Topic.ORDERS)):
                await asyncio.sleep(0.02)
            await asyncio.sleep(0.25)  # one more status report
            states = await read_live_states(redis_async, keys)
    finally:
        stop.set()
        await task

    assert ctx.extra_counts["partition_worker_failures"] == 1
    assert len(built) == 2
    assert [s.counts["partition_worker_failures"] for s in states] == [1]


async def test_a_partition_rebuilding_its_state__counts_its_backlog_in_the_instances_lag(
    redis_async: aioredis.Redis, keys: KeySpace, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Until its first read a rebuilding worker reports nothing itself; its stream's backlog is in
    the instance's lag (``cdb status``, ``cdb_consumer_lag``) from the start, not 0."""
    await _history(redis_async, keys)  # sig-1..sig-4, finished: what the rebuild replays
    for i in (5, 6, 7):
        await redis_async.xadd(keys.stream(Topic.SIGNALS), _signal(i))
    rebuilding, go_on = asyncio.Event(), asyncio.Event()

    async def held_replay(*args: object, **kwargs: object) -> int:
        rebuilding.set()
        await go_on.wait()
        return await replay_history(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr("services.partitions.replay_history", held_replay)
    settings = service_settings(ServiceName.RISK, keys, redis_url, "pydantic-lenient")
    ctx = ServiceContext.create(ServiceName.RISK, settings, redis_async)
    stop = asyncio.Event()
    task = asyncio.create_task(
        run_consuming_service(RiskService(ctx), ctx, stop, status_interval_s=0.1, factory=RiskService)
    )
    try:
        async with asyncio.timeout(15):
            await rebuilding.wait()
            during: list[int] = []  # the lag cdb status shows, report after report
            while 3 not in during and len(during) < 100:  # ~2 s: 20 reports
                states = await read_live_states(redis_async, keys)
                during += [instance_row(s, now_ms())["lag"] for s in states]
                await asyncio.sleep(0.02)
            go_on.set()
            while ctx.live_state().counts.get("lag") != 0:  # rebuilt, then the 3 handled
                await asyncio.sleep(0.02)
    finally:
        go_on.set()
        stop.set()
        await task
    assert 3 in during


async def test_a_restarted_risk__its_rebuild_leaves_out_a_signal_that_was_dead_lettered(
    redis_async: aioredis.Redis, keys: KeySpace, redis_url: str
) -> None:
    """The strict profile dead-lettered a signal without api_version: its group finished it, but
    nothing acted on it. Restarted on the lenient profile (which reads it), the rebuild must not
    take it into the positions as if it had been decided: its replayed copy is what acts."""
    strict = service_settings(ServiceName.RISK, keys, redis_url, "pydantic-strict")
    full = [{**_signal(i), "api_version": '"v1.0"'} for i in (1, 3)]
    signals = [full[0], signal_fields(2), full[1]]  # sig-2 legacy-shaped: no api_version, no timestamp
    before = await drain(redis_async, strict, RiskService, signals)
    assert [(letter.reason, letter.stream_id) for letter in before.letters] == [("missing", before.ids[1])]
    rebuilt: list[RiskService] = []

    def make(ctx: ServiceContext) -> RiskService:
        rebuilt.append(RiskService(ctx))
        return rebuilt[-1]

    lenient = service_settings(ServiceName.RISK, keys, redis_url, "pydantic-lenient")
    await drain(redis_async, lenient, make, [signal_fields(4)])

    assert sorted(rebuilt[0].engine.positions) == ["S1/USDT", "S3/USDT", "S4/USDT"]
