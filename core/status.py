"""Live state: each running instance reports what path it is really on, so tools can show it.

An instance writes a JSON document to ``KeySpace.status(service, instance)`` every
``interval`` seconds with a TTL of a few intervals (``state`` ``running``). On a clean
stop (SIGTERM) it writes a last document with ``state`` ``stopped`` and a short TTL
(:data:`STOPPED_TTL_S`), so ``cdb status`` shows "stopped" at once and the row then
goes away by itself. One that stops on an error (refused to start: a version gate, a
setting, an unreadable saved position; or failed later) writes a last document with
``state`` ``failed`` and the error's message (:attr:`LiveState.error`), kept longer
(:data:`FAILED_TTL_S`): "refused to start, here is why" is not mistaken for a crash. A
crashed or hung instance shows as stale first, then expires.
``cdb status``, ``cdb health`` and ``cdb cutover check`` read these documents; they
never guess from configuration files.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from core.errors import CdbError
from core.logging import scrub_secrets
from core.topics import KeySpace, ServiceName
from core.utils.clock import now_ms

if TYPE_CHECKING:  # importing core.redis here would import the codec, which imports migration -> here
    from core.redis.modes import AsyncClient, SyncClient

__all__ = [
    "FAILED",
    "FAILED_TTL_S",
    "RUNNING",
    "STALE_TTL_INTERVALS",
    "STOPPED",
    "STOPPED_TTL_S",
    "LiveState",
    "StatusReporter",
    "failure_text",
    "read_live_states",
    "running_instances",
]

STALE_TTL_INTERVALS = 10
"""A live-state key expires this many report intervals after its last write."""
STOPPED_TTL_S = 30.0
"""How long the last report of a cleanly stopped instance stays visible (then it expires)."""
RUNNING = "running"
"""``LiveState.state`` of an instance that is working (its reports keep coming)."""
STOPPED = "stopped"
"""``LiveState.state`` of an instance's last report after a clean stop."""
FAILED = "failed"
"""``LiveState.state`` of an instance's last report when it stopped on an error (refused to
start, or failed while running); :attr:`LiveState.error` says why."""
FAILED_TTL_S = 300.0
"""How long the last report of an instance that stopped on an error stays visible: long enough
to be read after the fact (a restarted container that refuses again writes it again)."""
_ERROR_CHARS = 1000  # a failed report's error is one line, at most this long


@dataclass
class LiveState:
    """What one running instance says about itself."""

    service: str
    instance: str
    path: str
    profile: str | None
    shadow: bool
    version: str
    started_ms: int
    partitions: int = 1
    owned: list[int] = field(default_factory=list)
    """The partitions this instance owns now (its leases); all of them with one partition."""
    reported_ms: int = 0
    interval_s: float = 2.0
    counts: dict[str, Any] = field(default_factory=dict)
    state: str = RUNNING
    """``running``; ``stopped`` in the last report of a clean stop, ``failed`` in that of a stop
    on an error (documents written before this field existed read as ``running``)."""
    error: str | None = None
    """Why the instance stopped, in a ``failed`` report: the error's message, on one line."""

    @property
    def stopped(self) -> bool:
        """True when this is an instance's last report: it stopped, cleanly or on an error
        (:attr:`failed`), and runs no more."""
        return self.state in (STOPPED, FAILED)

    @property
    def failed(self) -> bool:
        """True when this is the last report of an instance that stopped on an error."""
        return self.state == FAILED

    def is_live(self, at_ms: int | None = None) -> bool:
        """True when the instance is running and reported recently (neither stopped nor stale)."""
        return not self.stopped and not self.is_stale(at_ms)

    reads: dict[str, list[str]] = field(default_factory=dict)
    """Input topic -> the contract versions this instance can read (core.versions.live)."""
    writes: dict[str, str] = field(default_factory=dict)
    """Output topic -> the contract version this instance writes."""
    versions_seen: dict[str, dict[str, int]] = field(default_factory=dict)
    """Input topic -> version -> when this instance last decoded one (epoch ms)."""

    role: str = "service"
    """``service``, or ``comparator`` for an out-of-band shadow comparator (``cdb shadow``)
    that reports under the service it checks: it acts on nothing and publishes nothing."""

    @property
    def is_comparator(self) -> bool:
        """True for an out-of-band shadow comparator (evidence only, not a service instance)."""
        return self.role == "comparator"

    def uptime_s(self, at_ms: int | None = None) -> float:
        """Seconds since the instance started."""
        return ((at_ms or now_ms()) - self.started_ms) / 1000.0

    def is_stale(self, at_ms: int | None = None) -> bool:
        """True when a running instance missed more than two reports in a row (a stopped or
        failed instance is never stale: it said goodbye)."""
        if self.stopped:
            return False
        return (at_ms or now_ms()) - self.reported_ms > 3 * self.interval_s * 1000

    def to_json(self) -> str:
        """The document stored in Redis."""
        return json.dumps(asdict(self), separators=(",", ":"), default=str)

    @classmethod
    def from_json(cls, raw: bytes | str) -> LiveState:
        """Parse a stored document (unknown keys from newer versions are ignored)."""
        data = json.loads(raw)
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


class StatusReporter:
    """Writes an instance's live state to Redis every ``interval`` seconds (TTL: 10 intervals).

    The TTL outlasts the stale threshold (3 intervals, :meth:`LiveState.is_stale`) so a
    stopped or hung instance is shown as stale for a while before its key expires.
    """

    def __init__(
        self,
        redis: AsyncClient,
        keys: KeySpace,
        state: Callable[[], LiveState],
        *,
        interval_s: float = 2.0,
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._state = state
        self._interval = interval_s

    async def report_once(self) -> LiveState:
        """Write the current state now; returns what was written."""
        return await self._write(self._state(), max(1000, int(self._interval * STALE_TTL_INTERVALS * 1000)))

    async def run(self, stop: asyncio.Event) -> None:
        """Report until ``stop`` is set, then report a last time; Redis errors are retried next tick.

        The last report is still ``running``: the caller writes :meth:`report_stopped` once
        the instance has really finished (its last batch published or abandoned)."""
        while not stop.is_set():
            with contextlib.suppress(Exception):  # status must never take a service down
                await self.report_once()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self._interval)
        with contextlib.suppress(Exception):
            await self.report_once()

    async def report_stopped(self, ttl_s: float = STOPPED_TTL_S) -> LiveState:
        """Write the final report, ``state`` ``stopped``, kept ``ttl_s`` seconds (a clean stop):
        ``cdb status`` shows the instance as stopped at once instead of stale later."""
        return await self._report_last(STOPPED, None, ttl_s)

    async def report_failed(self, error: BaseException, ttl_s: float = FAILED_TTL_S) -> LiveState:
        """Write the final report of an instance that stops on ``error``: ``state`` ``failed``
        and the error's message (:func:`failure_text`), kept ``ttl_s`` seconds."""
        return await self._report_last(FAILED, failure_text(error), ttl_s)

    async def _report_last(self, outcome: str, error: str | None, ttl_s: float) -> LiveState:
        state = self._state()
        state.state = outcome
        state.error = error
        return await self._write(state, max(1, int(ttl_s * 1000)))

    async def _write(self, state: LiveState, ttl_ms: int) -> LiveState:
        state.reported_ms = now_ms()
        state.interval_s = self._interval
        key = self._keys.status(ServiceName(state.service), state.instance)
        await self._redis.set(key, state.to_json(), px=ttl_ms)
        return state

    async def withdraw(self, state: LiveState) -> None:
        """Remove the instance's document at once (nothing shows it afterwards)."""
        await self._redis.delete(self._keys.status(ServiceName(state.service), state.instance))


def failure_text(error: BaseException) -> str:
    """``error``'s message on one line, passwords scrubbed, for a ``failed`` report; an error
    cdb did not raise on purpose (not a :class:`~core.errors.CdbError`) is named by its type."""
    text = str(error) if isinstance(error, CdbError) else f"{type(error).__name__}: {error}"
    line = " | ".join(part.strip() for part in text.splitlines() if part.strip()) or type(error).__name__
    line = scrub_secrets(line)
    return line if len(line) <= _ERROR_CHARS else line[: _ERROR_CHARS - 3] + "..."


async def read_live_states(redis: AsyncClient, keys: KeySpace) -> list[LiveState]:
    """Every reported instance of this key space (running, stale or just stopped: see
    :meth:`LiveState.is_live`), ordered by pipeline position then instance.

    On a cluster, ``scan_iter`` walks every primary (redis-py's cluster SCAN) and the GETs
    go in a non-transactional pipeline that redis-py splits by node.
    """
    names = [k async for k in redis.scan_iter(match=keys.status_pattern(), count=500)]
    if not names:
        return []
    states = []
    pipe = redis.pipeline(transaction=False)  # one GET per key: cluster-safe, unlike MGET
    for name in names:
        pipe.get(name)
    for raw in await pipe.execute():
        if raw is not None:
            with contextlib.suppress(ValueError, TypeError):
                states.append(LiveState.from_json(raw))
    return _in_pipeline_order(states)


def running_instances(
    client: SyncClient, keys: KeySpace, service: ServiceName | None = None
) -> list[LiveState]:
    """Every instance (of ``service``, or of the whole pipeline) whose last report says it runs:
    live or stale (a stale one may be hung, not gone), not the last report of a stop (clean or
    failed);
    ordered by pipeline position then instance. For commands that must not run under them."""
    pattern = keys.status(service, "*") if service is not None else keys.status_pattern()
    found = []
    for name in client.scan_iter(match=pattern, count=500):
        raw: Any = client.get(name)
        if raw is None:
            continue  # expired between SCAN and GET
        try:
            state = LiveState.from_json(raw)
        except (ValueError, TypeError):
            continue
        if not state.stopped:
            found.append(state)
    return _in_pipeline_order(found)


def _in_pipeline_order(states: list[LiveState]) -> list[LiveState]:
    """``states`` by pipeline position (ws, signal, risk, execution; others last), then instance."""
    order = {s.value: i for i, s in enumerate(ServiceName)}
    return sorted(states, key=lambda s: (order.get(s.service, len(order)), s.instance))
