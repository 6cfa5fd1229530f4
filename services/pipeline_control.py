"""Handles on a running in-process pipeline, for fault injection (the mixed-version matrix).

:func:`services.pipeline.run_pipeline` gives each consumer its own stop event and
task, so one consumer can be killed like a crashed process (its task cancelled
while it holds read but unacknowledged entries) and started again under the same
instance name, while the others keep running. A :class:`PipelineHook` is called at
fixed points of a run (before the consumers start, after each published batch of
trades, before the drain) and gets the :class:`PipelineRun` to act on.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from core.codec import Codec
from core.redis.modes import AsyncClient
from core.settings import ServiceSettings
from core.topics import KeySpace, ServiceName
from services.execution.store import ResultStore
from services.runtime import ConsumingService, ServiceContext, run_consuming_service

__all__ = ["CONSUMERS", "CodecFactory", "PipelineHook", "PipelineRun", "ServiceFactory"]

CONSUMERS = (ServiceName.SIGNAL, ServiceName.RISK, ServiceName.EXECUTION)
"""The services that read a topic stream, in pipeline order."""

CodecFactory = Callable[[ServiceName, ServiceSettings], Codec]
"""Chooses a service's codec from its settings (default: :func:`core.codec.codec_for`)."""

ServiceFactory = Callable[[ServiceName, ServiceContext], ConsumingService]
"""Builds a consumer's business object (fresh state) on an existing context."""


@dataclass
class PipelineRun:
    """One running pipeline: its client, key space, contexts and the consumer tasks.

    ``services`` holds the business object each consumer task runs; a hook may
    replace one (e.g. with a wrapper) before the consumers start.
    """

    redis: AsyncClient
    keys: KeySpace
    ctxs: dict[ServiceName, ServiceContext]
    store: ResultStore
    services: dict[ServiceName, ConsumingService]
    make_service: ServiceFactory
    consumer_options: dict[str, Any] | None = None
    held: set[ServiceName] = field(default_factory=set)
    tasks: dict[ServiceName, asyncio.Task[Any]] = field(default_factory=dict)
    stops: dict[ServiceName, asyncio.Event] = field(default_factory=dict)
    restarts: dict[ServiceName, int] = field(default_factory=dict)
    extra: dict[str, ServiceContext] = field(default_factory=dict)
    """Further instances (by instance name) of a service, sharing its consumer group."""
    extra_tasks: dict[str, asyncio.Task[Any]] = field(default_factory=dict)
    extra_stops: dict[str, asyncio.Event] = field(default_factory=dict)

    def hold(self, service: ServiceName) -> None:
        """Do not start ``service`` with the others (call from :meth:`PipelineHook.on_start`);
        a hook starts it later with :meth:`start`."""
        self.held.add(service)

    def start(self, service: ServiceName, svc: ConsumingService | None = None) -> None:
        """Start the consumer task of ``service`` (with ``svc`` if given) under its usual instance name."""
        if service in self.tasks and not self.tasks[service].done():
            raise RuntimeError(f"{service.value} is already running")
        if svc is not None:
            self.services[service] = svc
        stop = asyncio.Event()
        self.stops[service] = stop
        self.tasks[service] = asyncio.create_task(
            run_consuming_service(
                self.services[service],
                self.ctxs[service],
                stop,
                consumer_options=self.consumer_options,
                # An object given here (a wrapper, a probe) serves every partition itself.
                factory=None if svc is not None else self._factory(service),
            ),
            name=f"cdb-{service.value}",
        )

    def failure(self) -> BaseException | None:
        """The error a consumer task ended with, if one did (a task a hook cancelled, or one that
        ended cleanly, is none): such a service handles nothing more, so the run cannot drain."""
        for task in (*self.tasks.values(), *self.extra_tasks.values()):
            if task.done() and not task.cancelled() and task.exception() is not None:
                return task.exception()
        return None

    def _factory(self, service: ServiceName) -> Callable[[ServiceContext], ConsumingService] | None:
        # A fresh business object each time a partition is (re)acquired, so its state is always
        # rebuilt from the streams. Execution keeps its state in the store: one object serves all.
        if service is ServiceName.EXECUTION:
            return None
        return lambda ctx: self.make_service(service, ctx)

    def start_instance(self, ctx: ServiceContext) -> None:
        """Start one more instance of ``ctx.service`` (named ``ctx.settings.instance``): it joins
        the service's group and takes its share of the partitions."""
        name = ctx.settings.instance
        if name in self.extra_tasks and not self.extra_tasks[name].done():
            raise RuntimeError(f"instance {name} is already running")
        stop = asyncio.Event()
        self.extra[name], self.extra_stops[name] = ctx, stop
        self.extra_tasks[name] = asyncio.create_task(
            run_consuming_service(
                self.make_service(ctx.service, ctx),
                ctx,
                stop,
                consumer_options=self.consumer_options,
                factory=self._factory(ctx.service),
            ),
            name=f"cdb-{name}",
        )

    async def kill_instance(self, name: str) -> None:
        """Cancel a further instance as a crash would: its leases and pending entries stay
        behind until they expire and another instance takes them over."""
        task = self.extra_tasks.pop(name, None)
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def kill(self, service: ServiceName) -> None:
        """Cancel the consumer task of ``service`` as a crash would: entries it read but had
        not acknowledged stay pending under its instance name."""
        task = self.tasks.pop(service, None)
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def restart(self, service: ServiceName, *, fresh: bool = True) -> None:
        """Start ``service`` again under the same instance name, so it first re-reads its own
        pending entries. ``fresh``: with a new business object, as a restarted process
        would have (only what the store persisted survives)."""
        await self.kill(service)
        svc = self.make_service(service, self.ctxs[service]) if fresh else None
        self.restarts[service] = self.restarts.get(service, 0) + 1
        self.start(service, svc)

    async def stop_all(self) -> None:
        """Ask every consumer to stop after its current batch and wait for them."""
        for stop in [*self.stops.values(), *self.extra_stops.values()]:
            stop.set()
        for task in [*self.tasks.values(), *self.extra_tasks.values()]:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.tasks.clear()
        self.extra_tasks.clear()


class PipelineHook:
    """A fault or probe injected into a run; override the points you need (all no-ops here)."""

    async def on_start(self, run: PipelineRun) -> None:
        """Before the consumers start (replace ``run.services[...]`` or :meth:`PipelineRun.hold`)."""

    async def after_batch(self, run: PipelineRun, published: int, total: int) -> None:
        """After ws published a batch; ``published`` trades of ``total`` so far."""

    async def before_drain(self, run: PipelineRun) -> None:
        """After the last trade was published, before waiting for every stage to go idle."""
