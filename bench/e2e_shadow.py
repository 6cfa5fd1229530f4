"""The out-of-band comparator in the end-to-end benchmark: ``cdb shadow signal`` as its own
process, and how far behind the pipeline it falls (its group's backlog on market_data)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import time

import redis.asyncio as aioredis

from bench.e2e_procs import _CDB
from core.topics import KeySpace, ServiceName, Topic
from migration.comparator import comparator_group
from services.pipeline import group_backlog

__all__ = ["ComparatorWatch", "comparator_command"]


def comparator_command() -> list[str]:
    """The command line of ``cdb shadow signal``."""
    return [*_CDB, "shadow", ServiceName.SIGNAL.value]


class ComparatorWatch:
    """Samples the comparator group's backlog (undelivered + pending) every 0.1 s on demand."""

    def __init__(self, redis: aioredis.Redis, keys: KeySpace, proc: subprocess.Popen[bytes]) -> None:
        self.redis = redis
        self.proc = proc
        self.stream = keys.stream(Topic.MARKET_DATA)
        self.group = comparator_group(keys, ServiceName.SIGNAL)
        self._max = 0
        self._task: asyncio.Task[None] | None = None

    async def backlog(self) -> int:
        """Entries the comparator has not compared yet."""
        return await group_backlog(self.redis, self.stream, self.group)

    async def wait_group(self, timeout_s: float = 60.0) -> None:
        """Wait until the comparator created its group (it exits with an error otherwise)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"cdb shadow exited with {self.proc.returncode} at start")
            with contextlib.suppress(aioredis.ResponseError):
                groups = await self.redis.xinfo_groups(self.stream)
                if any(g["name"] in (self.group, self.group.encode()) for g in groups):
                    return
            await asyncio.sleep(0.1)
        raise RuntimeError("the comparator did not create its group within 60 s")

    async def wait_idle(self, timeout_s: float) -> bool:
        """True once the comparator compared everything (within ``timeout_s``)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if await self.backlog() == 0:
                return True
            await asyncio.sleep(0.1)
        return False

    def start_sampling(self) -> None:
        """Record the largest backlog from now on."""
        self._max = 0
        self._task = asyncio.create_task(self._sample())

    async def stop_sampling(self) -> int:
        """Stop sampling; the largest backlog seen."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        return self._max

    async def _sample(self) -> None:
        while True:
            self._max = max(self._max, await self.backlog())
            await asyncio.sleep(0.1)

    def stop(self) -> None:
        """SIGTERM the comparator and wait for it."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
