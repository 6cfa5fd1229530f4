"""Faults the matrix injects into a run; each must leave the business result unchanged.

- ``consumer-restart``: execution is held back until signal and risk are idle, then
  reads every order in one batch and is killed after handling half of it (read,
  partly handled, nothing acknowledged); it restarts under the same instance name
  with a fresh business object, re-reads its own pending entries and must neither
  lose nor double an order (execution stores and publishes a batch after its last
  handler, so none of the half handled was published: every order is new to it).
- ``redis-restart``: the mix runs on a throwaway redis-server (AOF, fsync always),
  which is killed a third of the way through publishing and started again half a
  second later; publisher and consumers ride it out on the transport's retries.
- ``malformed``: a burst of bad entries (:mod:`harness.matrix.malformed`) is XADDed
  raw into every consumed topic's stream mid-run; each must land in that topic's
  dead-letter stream.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from core.codec import Decoded
from core.topics import ServiceName, Topic
from harness.local_redis import LocalRedisServer
from harness.matrix.malformed import BURST_TOPICS, malformed_entries
from services.pipeline import PipelineResult, service_backlog
from services.pipeline_control import CONSUMERS, PipelineHook, PipelineRun
from services.runtime import ConsumingService

__all__ = [
    "ConsumerRestart",
    "Fault",
    "FaultHook",
    "FaultReport",
    "MalformedBurst",
    "RedisRestart",
    "make_hooks",
]


class Fault(StrEnum):
    """A fault the matrix can inject (``--fault``)."""

    CONSUMER_RESTART = "consumer-restart"
    REDIS_RESTART = "redis-restart"
    MALFORMED = "malformed"


@dataclass
class FaultReport:
    """What a fault did (facts for the table) and what it found wrong with the run."""

    fault: Fault
    facts: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    injected: dict[Topic, list[str]] = field(default_factory=dict)
    """Stream ids of injected entries per topic (``malformed`` only)."""


class FaultHook(PipelineHook):
    """A pipeline hook that reports what it did and checks the finished run."""

    report: FaultReport

    def check(self, result: PipelineResult) -> list[str]:
        """Fault-specific problems with the finished run (none by default)."""
        return []


class _Tripwire:
    """Wraps a consumer's business object: on the ``at``-th message it hangs, as a process
    stuck mid-batch, until its task is cancelled."""

    def __init__(self, inner: ConsumingService, at: int) -> None:
        self.inner, self.at, self.seen = inner, at, 0
        self.reached = asyncio.Event()

    async def start(self) -> None:
        await self.inner.start()

    async def handle(self, decoded: Decoded, entry_id: str) -> object:
        self.seen += 1
        if self.seen == self.at:
            self.reached.set()
            await asyncio.Event().wait()
        return await self.inner.handle(decoded, entry_id)

    async def finish_batch(self, work: Mapping[str, object]) -> Mapping[str, BaseException]:
        step = getattr(self.inner, "finish_batch", None)  # the wrapped object's batch step, if any
        return {} if step is None else await step(work)

    async def before_ack(self) -> None:
        hook = getattr(self.inner, "before_ack", None)  # the wrapped object's per-batch step, if any
        if hook is not None:
            await hook()

    async def close(self) -> None:
        await self.inner.close()


async def _wait_idle(run: PipelineRun, services: Sequence[ServiceName], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        backlog = 0
        for service in services:
            backlog += await service_backlog(run.redis, run.keys, service)
        if backlog == 0:
            return
        await asyncio.sleep(0.02)
    raise TimeoutError(f"{', '.join(s.value for s in services)} did not go idle in {timeout_s}s")


class ConsumerRestart(FaultHook):
    """Kill ``service``'s consumer mid-batch, before its ack, and restart it (see module doc)."""

    def __init__(self, service: ServiceName = ServiceName.EXECUTION, timeout_s: float = 30.0) -> None:
        self.service, self.timeout_s = service, timeout_s
        self.report = FaultReport(Fault.CONSUMER_RESTART, {"service": service.value})

    async def on_start(self, run: PipelineRun) -> None:
        run.hold(self.service)

    async def before_drain(self, run: PipelineRun) -> None:
        upstream = CONSUMERS[: CONSUMERS.index(self.service)]
        await _wait_idle(run, upstream, self.timeout_s)
        topic = self.service.consumes
        assert topic is not None
        stream, group = run.keys.stream(topic), run.keys.group(self.service)
        waiting = int(await run.redis.xlen(stream))
        if waiting < 2:
            self.report.problems.append(f"only {waiting} {topic.value} entries: cannot kill mid-batch")
            run.start(self.service)
            return
        tripwire = _Tripwire(run.services[self.service], at=waiting // 2 + 1)
        run.start(self.service, tripwire)
        await asyncio.wait_for(tripwire.reached.wait(), self.timeout_s)
        await run.kill(self.service)
        instance = run.ctxs[self.service].settings.instance
        summary: Any = await run.redis.xpending(stream, group)
        pending = sum(int(c["pending"]) for c in summary["consumers"] if _text(c["name"]) == instance)
        self.report.facts.update(
            read_in_batch=waiting, handled_before_kill=tripwire.at - 1, pending_at_kill=pending
        )
        if pending != waiting:
            self.report.problems.append(f"{pending} of {waiting} entries pending at the kill (expected all)")
        await run.restart(self.service, fresh=True)

    def check(self, result: PipelineResult) -> list[str]:
        handled = int(self.report.facts.get("handled_before_kill", 0))
        if self.service is not ServiceName.EXECUTION or not handled:
            return []
        # Execution's handlers only fill: a batch is stored and published after its last handler
        # (finish_batch), so a kill mid-batch leaves nothing stored or published, and the restarted
        # instance finds every order new (exactly one result each: the baseline comparison). An
        # order it recognised (a duplicate, or already published) went out before its batch ended.
        seen = result.count(ServiceName.EXECUTION, "duplicate_orders") + result.count(
            ServiceName.EXECUTION, "results_already_published"
        )
        if seen:
            return [
                f"restarted execution recognised {seen} redelivered orders: published before the batch ended"
            ]
        return []


class RedisRestart(FaultHook):
    """Kill the mix's own Redis a third of the way through publishing; start it again later."""

    def __init__(self, server: LocalRedisServer, *, at_fraction: float = 1 / 3, downtime_s: float = 0.5):
        self.server, self.at_fraction, self.downtime_s = server, at_fraction, downtime_s
        self.report = FaultReport(Fault.REDIS_RESTART, {"downtime_s": downtime_s})
        self._back: asyncio.Task[None] | None = None

    async def after_batch(self, run: PipelineRun, published: int, total: int) -> None:
        if self._back is not None or published >= total or published < total * self.at_fraction:
            return
        await asyncio.to_thread(self.server.kill)
        self.report.facts["killed_after_trades"] = published
        self._back = asyncio.create_task(self._come_back())

    async def _come_back(self) -> None:
        await asyncio.sleep(self.downtime_s)
        await asyncio.to_thread(self.server.start)

    async def before_drain(self, run: PipelineRun) -> None:
        if self._back is None:
            self.report.problems.append("the restart never happened (too few batches)")
            return
        await self._back

    def check(self, result: PipelineResult) -> list[str]:
        retries = sum(int(r.counts.get("transport_retries", 0)) for r in result.services.values())
        self.report.facts["transport_retries"] = retries
        return [] if retries else ["no transport retry was counted: the restart did not hit the pipeline"]


class MalformedBurst(FaultHook):
    """XADD ``per_kind`` entries of every malformation into each consumed topic, mid-run."""

    def __init__(self, *, per_kind: int = 3, at_fraction: float = 0.5, max_bytes: int = 65_536) -> None:
        self.per_kind, self.at_fraction, self.max_bytes = per_kind, at_fraction, max_bytes
        self.report = FaultReport(Fault.MALFORMED)

    async def after_batch(self, run: PipelineRun, published: int, total: int) -> None:
        if self.report.injected or published < min(total, total * self.at_fraction):
            return
        for topic in BURST_TOPICS:
            pipe = run.redis.pipeline(transaction=False)
            for _, fields in malformed_entries(topic, per_kind=self.per_kind, max_bytes=self.max_bytes):
                pipe.xadd(run.keys.stream(topic), fields)  # type: ignore[arg-type]  # redis-py: invariant dict type
            self.report.injected[topic] = [_text(i) for i in await pipe.execute()]
        self.report.facts["injected"] = {t.value: len(ids) for t, ids in self.report.injected.items()}

    async def before_drain(self, run: PipelineRun) -> None:
        if not self.report.injected:
            self.report.problems.append("the burst was never injected")


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def make_hooks(
    faults: Sequence[Fault], *, server: LocalRedisServer | None = None, max_bytes: int = 65_536
) -> list[FaultHook]:
    """The hooks for ``faults``; ``redis-restart`` needs the mix's own ``server``."""
    hooks: list[FaultHook] = []
    for fault in faults:
        if fault is Fault.CONSUMER_RESTART:
            hooks.append(ConsumerRestart())
        elif fault is Fault.MALFORMED:
            hooks.append(MalformedBurst(max_bytes=max_bytes))
        else:
            if server is None:
                raise ValueError("redis-restart needs the mix's own LocalRedisServer")
            hooks.append(RedisRestart(server))
    return hooks
