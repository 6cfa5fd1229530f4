"""The forced-strict incident of issue 14 as a pipeline hook, and the business content of a run.

The incident: the whole pipeline is legacy (ws too, so every market-data entry lacks
``api_version``); at ``strict_at`` trades, signal is recreated strict from its env file,
dead-letters every trade it reads, and is stopped at ``stop_at``. What happens then is
the recovery under test, given as a callback (``recover``) that runs at ``recover_at``
while ws has kept publishing in between.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from core.codec import decode_field_map
from core.settings import ServiceSettings
from core.topics import KeySpace, ServiceName, Topic
from services.pipeline import read_stream, service_backlog
from services.pipeline_control import PipelineHook, PipelineRun
from services.runtime import ServiceContext

__all__ = ["Incident", "Inject", "business", "env_settings", "write_env"]

_SIGNAL_FIELDS = ("signal_id", "symbol", "side", "price", "strength", "reason")
_ORDER_FIELDS = ("order_id", "signal_id", "symbol", "side", "order_type", "quantity", "price")
_RESULT_FIELDS = ("order_id", "status", "filled_quantity", "average_price", "fee", "side", "symbol")


def write_env(env_dir: Path, service: ServiceName, pydantic: bool, profile: str = "lenient") -> None:
    """The env file of one container, as an operator edits it."""
    env_dir.mkdir(parents=True, exist_ok=True)
    text = f"USE_PYDANTIC_CONTRACTS={'true' if pydantic else 'false'}\nCONTRACT_PROFILE={profile}\n"
    (env_dir / f"{service.value}.env").write_text(text, encoding="utf-8")


def env_settings(env_dir: Path, service: ServiceName, keys: KeySpace, redis_url: str) -> ServiceSettings:
    """What a container recreated from ``env_dir/<service>.env`` starts with."""
    return ServiceSettings.load(
        service,
        environ={},
        env_file=env_dir / f"{service.value}.env",
        overrides={
            "key_prefix": keys.prefix,
            "redis_url": redis_url,
            "instance": f"rec-{service.value}",
            "consumer_block_ms": 20,
        },
    )


async def wait_idle(run: PipelineRun, service: ServiceName, timeout_s: float = 60.0) -> None:
    """Until ``service`` has read and acknowledged everything in its input (polled)."""
    deadline = time.monotonic() + timeout_s
    while await service_backlog(run.redis, run.keys, service):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{service.value} did not catch up in {timeout_s}s")
        await asyncio.sleep(0.02)


async def stop(run: PipelineRun, service: ServiceName) -> None:
    """``docker compose stop <service>``: a clean stop (the batch acked, live status withdrawn)."""
    run.stops[service].set()
    await run.tasks.pop(service)


def recreate(run: PipelineRun, service: ServiceName, settings: ServiceSettings) -> None:
    """``docker compose up -d --no-deps <service>``: a new process (fresh state) with new flags."""
    ctx = ServiceContext.create(service, settings, run.redis)
    run.ctxs[service] = ctx
    run.services[service] = run.make_service(service, ctx)
    run.start(service)


Step = Callable[["Incident", PipelineRun], Awaitable[None]]


class Incident(PipelineHook):
    """Signal recreated strict from its env file at ``strict_at`` trades; at ``stop_at`` (once it
    has read everything) ``at_stop`` runs, at ``recover_at`` ``at_recover`` (ws publishes between)."""

    def __init__(
        self,
        env_dir: Path,
        redis_url: str,
        at_stop: Step,
        at_recover: Step,
        *,
        strict_at: int,
        stop_at: int,
        recover_at: int,
    ) -> None:
        self.env_dir, self.redis_url = env_dir, redis_url
        self.at_stop, self.at_recover = at_stop, at_recover
        self.strict_at, self.stop_at, self.recover_at = strict_at, stop_at, recover_at
        self.facts: dict[str, Any] = {}

    async def after_batch(self, run: PipelineRun, published: int, total: int) -> None:
        if published == self.strict_at:
            await wait_idle(run, ServiceName.SIGNAL)
            await stop(run, ServiceName.SIGNAL)
            self.facts["env_before"] = (self.env_dir / "signal.env").read_text(encoding="utf-8")
            write_env(self.env_dir, ServiceName.SIGNAL, pydantic=True, profile="strict")
            self.restart_from_env(run)
        elif published == self.stop_at:
            await wait_idle(run, ServiceName.SIGNAL)
            self.facts["dead_letters"] = int(await run.redis.xlen(run.keys.dlq(Topic.MARKET_DATA)))
            await self.at_stop(self, run)
        elif published == self.recover_at:
            await self.at_recover(self, run)

    def roll_back_env(self) -> None:
        """``cdb cutover rollback`` for this one file: the env file as it was before the incident."""
        (self.env_dir / "signal.env").write_text(self.facts["env_before"], encoding="utf-8")

    def restart_from_env(self, run: PipelineRun) -> None:
        """Recreate signal from its env file."""
        settings = env_settings(self.env_dir, ServiceName.SIGNAL, run.keys, self.redis_url)
        recreate(run, ServiceName.SIGNAL, settings)


async def business(redis: aioredis.Redis, keys: KeySpace) -> dict[str, list[dict[str, Any]]]:
    """Signals, orders and order results of a run by content: one per id (a redelivered
    duplicate must be identical to count once), sorted by id, without clock-made fields."""
    out: dict[str, list[dict[str, Any]]] = {}
    for topic, fields, key in (
        (Topic.SIGNALS, _SIGNAL_FIELDS, "signal_id"),
        (Topic.ORDERS, _ORDER_FIELDS, "order_id"),
        (Topic.ORDER_RESULTS, _RESULT_FIELDS, "order_id"),
    ):
        seen: dict[str, dict[str, Any]] = {}
        for _, entry in await read_stream(redis, keys, topic):
            # The field map itself (JSON values), not a codec: legacy-shaped entries count as well.
            try:
                values = decode_field_map(entry)
            except ValueError:
                continue
            item = {f: values.get(f) for f in fields}
            earlier = seen.setdefault(item[key], item)
            assert earlier == item, f"two different {topic.value} with {key} {item[key]}"
        out[topic.value] = [seen[k] for k in sorted(seen)]
    return out


class Inject(PipelineHook):
    """XADD ``entries`` (field maps) into the market-data stream once ``at`` trades are published:
    the same stream position in every run."""

    def __init__(self, at: int, entries: list[dict[str, str] | dict[bytes, bytes]]) -> None:
        self.at, self.entries = at, entries
        self.ids: list[str] = []

    async def after_batch(self, run: PipelineRun, published: int, total: int) -> None:
        if published != self.at:
            return
        for fields in self.entries:
            raw = await run.redis.xadd(run.keys.stream(Topic.MARKET_DATA), fields)  # type: ignore[arg-type]
            self.ids.append(raw.decode() if isinstance(raw, bytes) else str(raw))
