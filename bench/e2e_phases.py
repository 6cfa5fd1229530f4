"""The phases of one end-to-end setting: capacity, a fixed offered rate, the latency curve."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from typing import Any

from bench.e2e_cpu import WindowCpu
from bench.e2e_hops import Hops
from bench.e2e_load import Feed, GroupProgress, Window, backlog, read_window, wait_idle
from bench.e2e_probe import CYCLE
from bench.e2e_result import E2eResult, summarize
from bench.e2e_shadow import ComparatorWatch
from bench.machine import ForeignCpu
from bench.stats import Figure
from core.topics import KeySpace, Topic

__all__ = ["Rig", "capacity_phase", "curve_phase", "prime_probe", "rate_phase"]

LAG_CAP = 20_000
MAX_POINT_S = 60.0
"""The longest a curve point runs to collect its samples."""
WARMUP_S = 2.0  # at most; a fifth of a short (--quick) phase
TICK_S = 0.002
BURST = 1_000


def _warmup(seconds: float) -> float:
    return min(WARMUP_S, seconds / 5)


def _step(seconds: float) -> float:
    return min(1.0, seconds / 10)


async def _capacity(feed: Feed, progress: GroupProgress, seconds: float, result: E2eResult) -> None:
    start = time.monotonic()
    end = start + seconds
    while time.monotonic() < end:
        done = await progress.sample()
        if feed.sent - done >= LAG_CAP:
            await asyncio.sleep(0.005)
            continue
        await feed.publish(500)
    await progress.sample()
    result.capacity = Figure(progress.rates(start + _warmup(seconds), end + 1, _step(seconds)))
    result.capacity_avg = progress.rate(start + _warmup(seconds), end + 1)


async def _sampler(progress: GroupProgress, stop: asyncio.Event) -> None:
    while not stop.is_set():
        await progress.sample()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.1)


async def _latency_phase(rig: Rig, rate: float, seconds: float, result: E2eResult) -> tuple[int, int]:
    feed, progress, hops = rig.feed, rig.progress[0], rig.hops
    feed.probe_every = rig.probe_every  # the probe runs in the latency windows only
    cpu = await WindowCpu(rig.named, progress.done).start()
    try:
        window = await _offer(feed, progress, hops, rate=rate, seconds=seconds, result=result)
    finally:
        feed.probe_every = 0
    # What a message costs at this rate: at a low one, each wake carries few entries.
    result.rate_cpu_us = await cpu.per_message_us()
    return window


async def _offer(
    feed: Feed, progress: GroupProgress, hops: Hops, *, rate: float, seconds: float, result: E2eResult
) -> tuple[int, int]:
    stop = asyncio.Event()
    marked = False
    sampler = asyncio.create_task(_sampler(progress, stop))
    start = time.monotonic()
    first_ms = time.time_ns() // 1_000_000 + int(_warmup(seconds) * 1000)
    sent_before = feed.sent
    while (elapsed := time.monotonic() - start) < seconds:
        if not marked and elapsed >= _warmup(seconds):
            await hops.mark()  # the per-hop window starts with the id-based one (after warm-up)
            marked = True
        due = int(rate * elapsed) - (feed.sent - sent_before)
        while due > 0:  # in batches of at most BURST, each stamped when built
            await feed.publish(min(due, BURST))
            due -= BURST
        await asyncio.sleep(TICK_S)
    last_ms = time.time_ns() // 1_000_000
    stop.set()
    await sampler
    elapsed = time.monotonic() - start
    result.offered = (feed.sent - sent_before) / elapsed
    window = (start + _warmup(seconds), start + elapsed + 0.2)
    result.consumed = Figure(progress.rates(*window, _step(seconds)))
    result.consumed_avg = progress.rate(*window)
    return first_ms, last_ms


@dataclass
class Rig:
    """One setting's running pipeline: the feed, the groups to watch, the processes."""

    feed: Feed
    progress: list[GroupProgress]
    client: Any
    keys: KeySpace
    named: dict[str, int]
    watch: ComparatorWatch | None
    hops: Hops
    probe_every: int = 0


async def prime_probe(rig: Rig, timeout_s: float = 60.0) -> bool:
    """Publish the probe's first trades and wait for its first order (risk approves it with an
    empty book); False if no order came within ``timeout_s``."""
    await rig.feed.prime()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await rig.client.xlen(rig.keys.stream(Topic.ORDERS)) > 0:
            return True
        await asyncio.sleep(0.05)
    return False


def point_seconds(rate: float, seconds: float, samples: int, probe_every: int) -> float:
    """How long a curve point at ``rate`` runs: ``seconds``, or longer (up to
    :data:`MAX_POINT_S`) when that is what it takes for the probe to make about ``samples``
    orders after the warm-up, so a low rate's p99 is not merely the largest of a few dozen."""
    if samples <= 0 or probe_every <= 0 or rate <= 0:
        return seconds
    needed = samples * probe_every * CYCLE / rate + _warmup(seconds)
    return min(max(seconds, needed), MAX_POINT_S)


async def curve_phase(
    rig: Rig, rates: list[float], seconds: float, result: E2eResult, *, samples: int = 0
) -> None:
    """Latency at each offered rate of ``rates``, one point each (see :func:`point_seconds`)."""
    for rate in rates:
        await wait_idle(rig.progress, rig.feed.sent, timeout_s=120)
        point = E2eResult(result.setting, rate=rate)
        point.seconds = point_seconds(rate, seconds, samples, rig.probe_every)
        first_ms, last_ms = await _latency_phase(rig, rate, point.seconds, point)
        point.drained = await wait_idle(rig.progress, rig.feed.sent, timeout_s=120)
        point.hops = await rig.hops.since()
        result.curve.append(_point(point, await read_window(rig.client, rig.keys, first_ms, last_ms)))


def _point(r: E2eResult, window: Window) -> dict[str, object]:
    return {
        "rate": r.rate,
        "seconds": r.seconds,
        "offered": r.offered,
        "consumed": r.consumed_avg,
        "drained": r.drained,
        "results": summarize(window.results),
        "signals": summarize(window.signals),
        "stages": {stage: summarize(ms) for stage, ms in window.stages.items()},
        "hops": r.hops,
        "cpu_us": r.rate_cpu_us,
    }


async def capacity_phase(rig: Rig, seconds: float, result: E2eResult) -> None:
    foreign = ForeignCpu(list(rig.named.values()))
    cpu = await WindowCpu(rig.named, rig.progress[0].done).start()
    await _capacity(rig.feed, rig.progress[0], seconds, result)
    result.cpu_us = await cpu.per_message_us()
    result.foreign_cpu["capacity"] = foreign.share()
    if rig.watch is not None:
        result.comparator["backlog_after_capacity"] = await rig.watch.backlog()
        result.comparator["cpu_us_per_message"] = result.cpu_us.get("comparator")
    result.capacity_backlog = {p.service.value: await backlog(p) for p in rig.progress}
    await wait_idle(rig.progress, rig.feed.sent, timeout_s=120)
    if rig.watch is not None:
        result.comparator["caught_up_after_capacity"] = await rig.watch.wait_idle(timeout_s=120)


async def rate_phase(rig: Rig, rate: float, seconds: float, result: E2eResult) -> None:
    rig.feed.max_ahead_ms = 0
    result.seconds = seconds
    foreign = ForeignCpu(list(rig.named.values()))
    if rig.watch is not None:
        rig.watch.start_sampling()
    first_ms, last_ms = await _latency_phase(rig, rate, seconds, result)
    result.foreign_cpu["latency"] = foreign.share()
    result.drained = await wait_idle(rig.progress, rig.feed.sent, timeout_s=120)
    result.hops = await rig.hops.since()
    if rig.watch is not None:
        result.comparator["max_backlog_at_rate"] = await rig.watch.stop_sampling()
        result.comparator["caught_up_after_latency"] = await rig.watch.wait_idle(timeout_s=60)
    result.max_ahead_ms = rig.feed.max_ahead_ms
    window = await read_window(rig.client, rig.keys, first_ms, last_ms)
    result.latency_results, result.latency_signals = window.results, window.signals
    result.curve.append(_point(result, window))
