"""Run one real service on real Redis over given stream entries until its group has finished them."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from core.redis.dead_letters import DeadLetter
from core.settings import ServiceSettings
from core.status import LiveState, read_live_states
from core.topics import KeySpace, ServiceName
from services.pipeline import group_backlog
from services.runtime import ConsumingService, ServiceContext, run_consuming_service

__all__ = ["PATHS", "Drained", "drain", "service_settings", "signal_fields", "trade_fields", "value_fields"]

PATHS = ("legacy", "pydantic-lenient")
"""The paths a service reads market data on before and during the migration."""

FieldMap = Mapping[bytes | str, bytes | str]


def value_fields(values: Mapping[str, Any]) -> dict[str, str]:
    """A stream field map written by hand: every value JSON-encoded, as producers do."""
    return {k: json.dumps(v) for k, v in values.items()}


def trade_fields(
    *, price: float, timestamp: int, trade_id: str, symbol: str = "X/USDT", volume: float = 1.0
) -> dict[str, str]:
    """The field map of a valid market_data trade (a BUY on mexc)."""
    return value_fields(
        {
            "symbol": symbol,
            "price": price,
            "volume": volume,
            "side": "BUY",
            "venue": "mexc",
            "timestamp": timestamp,
            "trade_id": trade_id,
        }
    )


def signal_fields(i: int, **raw: str) -> dict[str, str]:
    """The field map of a valid signal ``sig-<i>`` on its own symbol; ``raw`` replaces fields
    as written (already encoded)."""
    fields = value_fields(
        {
            "signal_id": f"sig-{i}",
            "symbol": f"S{i}/USDT",
            "side": "BUY",
            "price": 100.0,
            "strength": 0.5,
            "reason": "test",
        }
    )
    return {**fields, **raw}


def service_settings(service: ServiceName, keys: KeySpace, redis_url: str, path: str) -> ServiceSettings:
    """Settings for a test instance (``path``: legacy, pydantic-lenient or pydantic-strict): fast
    polling, few deliveries, quick reclaims."""
    return ServiceSettings.load(
        service,
        environ={},
        overrides={
            "key_prefix": keys.prefix,
            "redis_url": redis_url,
            "use_pydantic_contracts": path != "legacy",
            "contract_profile": "strict" if path == "pydantic-strict" else "lenient",
            "instance": f"t-{service.value}",
            "consumer_block_ms": 20,
            "max_deliveries": 2,
            "reclaim_idle_ms": 1_000,
            "max_message_bytes": 2_048,
        },
    )


@dataclass
class Drained:
    """What a service run did with the entries it was given."""

    ctx: ServiceContext
    ids: list[str]
    letters: list[DeadLetter]
    outputs: list[dict[bytes, bytes]]
    live: LiveState | None

    @property
    def dead_ids(self) -> set[str]:
        """Input entry ids that were dead-lettered."""
        return {letter.stream_id for letter in self.letters}


async def _finished(redis: aioredis.Redis, keys: KeySpace, service: ServiceName) -> bool:
    topic = service.consumes
    assert topic is not None
    return await group_backlog(redis, keys.stream(topic), keys.group(service)) == 0


async def drain(
    redis: aioredis.Redis,
    settings: ServiceSettings,
    make: Callable[[ServiceContext], ConsumingService],
    entries: Sequence[FieldMap],
    *,
    then: Callable[[ServiceContext], Any] | None = None,
    inspect: Callable[[ServiceContext], Any] | None = None,
    timeout_s: float = 30.0,
) -> Drained:
    """Add ``entries`` to the service's input stream, run the service until its group has
    finished every entry (optionally ``then`` awaited, and finished again), let it report its
    live state, await ``inspect`` (while it runs), stop."""
    service = settings.service
    assert service is not None
    assert service.consumes is not None
    ctx = ServiceContext.create(service, settings, redis)
    keys = ctx.keys
    pipe = redis.pipeline(transaction=False)
    for fields in entries:
        pipe.xadd(keys.stream(service.consumes), dict(fields))  # type: ignore[arg-type]
    ids = [i.decode() for i in await pipe.execute()]
    stop = asyncio.Event()
    task = asyncio.create_task(run_consuming_service(make(ctx), ctx, stop, status_interval_s=0.1))
    try:
        async with asyncio.timeout(timeout_s):
            for step in (None, then):
                if step is not None:
                    await step(ctx)
                await asyncio.sleep(0.05)
                while not await _finished(redis, keys, service):
                    await asyncio.sleep(0.02)
            await asyncio.sleep(0.25)  # one more status report after the last entry
            states = [s for s in await read_live_states(redis, keys) if s.service == service.value]
            if inspect is not None:
                await inspect(ctx)
    finally:
        stop.set()
        await task
    letters = await ctx.dead_letters.read(service.consumes, count=1_000, newest_first=False)
    produced = [f for _, f in await redis.xrange(keys.stream(service.produces))]
    return Drained(ctx, ids, letters, produced, states[0] if states else None)
