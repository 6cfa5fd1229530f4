"""``cdb cutover check``: the release manager's GO/NO-GO for the strict profile, with evidence.

GO only when every criterion holds:

1. **instances**: every service has a fresh live instance and every reporting
   instance (stale ones included: a hung legacy process may still publish) is on
   the Pydantic path;
2. **defaults**: no lenient consumer filled ``api_version``/``timestamp`` in the
   window -- with ``window_s > 0`` two live-state snapshots ``window_s`` apart are
   compared (an instance that (re)started in between counts from its start); with
   ``window_s == 0`` the counters since each instance started are used;
3. **streams**: no entry a strict consumer could still read, and none the current
   producers wrote, lacks ``api_version`` or ``timestamp``
   (:mod:`migration.stream_scan`);
4. **dead letters**: the dead-letter streams hold nothing unreviewed -- empty, except
   entries already replayed (``cdb dlq replay``) or at/before ``dlq_reviewed_before``;
   ``allow_dlq`` turns a finding into a warning;
5. **shadow**: no shadow mismatch in the window (same window rule as 2), from in-process
   shadow and from out-of-band comparators (``cdb shadow``) alike. Messages of a later
   contract version than the legacy path reads are no mismatch: listed in the details, apart.

A comparator reports under the service it checks with role ``comparator``: its
mismatches are evidence for 5, but it is not an instance of that service for 1 and 3
(it publishes nothing, and a service with only a comparator running has no instance).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from core.status import LiveState, read_live_states
from core.topics import CodecPath, KeySpace, ServiceName, Topic
from core.utils.clock import now_ms
from migration.dlq_review import review_dead_letters
from migration.stream_scan import scan_topic

if TYPE_CHECKING:  # core.redis imports the codec, whose registry imports migration
    from core.redis.modes import AsyncClient

__all__ = ["CheckOptions", "CutoverReport", "Finding", "Verdict", "check_cutover", "counter_delta"]

Sleep = Callable[[float], Awaitable[None]]


class Verdict(StrEnum):
    """The answer of ``cdb cutover check``."""

    GO = "GO"
    NO_GO = "NO-GO"


@dataclass(frozen=True)
class CheckOptions:
    """How strict the check is; the defaults are the safe ones."""

    window_s: float = 0.0
    scan: int = 1000
    since_all: bool = False
    allow_dlq: bool = False
    dlq_reviewed_before: str | None = None


@dataclass
class Finding:
    """One criterion: whether it holds, a one-line summary and the evidence behind it."""

    name: str
    ok: bool
    summary: str
    details: list[str] = field(default_factory=list)
    data: Any = None

    def to_dict(self) -> dict[str, Any]:
        """Plain values for ``--json``."""
        return {
            "name": self.name,
            "ok": self.ok,
            "summary": self.summary,
            "details": self.details,
            "data": self.data,
        }


@dataclass
class CutoverReport:
    """Every finding, and the verdict they add up to."""

    prefix: str
    checked_ms: int
    options: CheckOptions
    findings: list[Finding]

    @property
    def verdict(self) -> Verdict:
        """GO when every finding holds."""
        return Verdict.GO if all(f.ok for f in self.findings) else Verdict.NO_GO

    def to_dict(self) -> dict[str, Any]:
        """Plain values for ``--json`` and the cutover log."""
        return {
            "verdict": self.verdict.value,
            "prefix": self.prefix,
            "checked_ms": self.checked_ms,
            "options": vars(self.options),
            "findings": [f.to_dict() for f in self.findings],
        }


def _text(value: Any) -> str:
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)


def _name(state: LiveState) -> str:
    return f"{state.service}/{state.instance}"


def _ints(value: Any) -> dict[str, int]:
    if not isinstance(value, Mapping):
        return {}
    return {str(k): int(v) for k, v in value.items() if isinstance(v, int | float)}


def counter_delta(before: LiveState | None, after: LiveState, name: str) -> dict[str, int]:
    """What the ``name`` breakdown of ``after`` grew by since ``before`` (the same process);
    everything since its start when ``before`` is another process or missing."""
    now = _ints(after.counts.get(name))
    if before is None or before.started_ms != after.started_ms:
        return {k: v for k, v in now.items() if v}
    then = _ints(before.counts.get(name))
    return {k: v - then.get(k, 0) for k, v in now.items() if v - then.get(k, 0) > 0}


def _instances(states: list[LiveState], at_ms: int) -> Finding:
    states = [s for s in states if not s.is_comparator]
    problems: list[str] = []
    for service in ServiceName:
        if not any(s.service == service.value and not s.is_stale(at_ms) for s in states):
            problems.append(f"{service.value}: no live instance reports its state (is it running?)")
    for s in states:
        if s.path != CodecPath.PYDANTIC.value:
            stale = " (stale: stopped or hung; its key expires by itself)" if s.is_stale(at_ms) else ""
            problems.append(f"{_name(s)} is on the {s.path} path{stale}")
    data = [
        {
            "service": s.service,
            "instance": s.instance,
            "path": s.path,
            "profile": s.profile,
            "stale": s.is_stale(at_ms),
        }
        for s in states
    ]
    if problems:
        legacy = sorted({s.service for s in states if s.path != CodecPath.PYDANTIC.value})
        summary = f"not every instance is on the Pydantic path (legacy: {', '.join(legacy) or 'none'})"
        if not legacy:
            summary = "a service has no live instance"
        return Finding("instances", False, summary, problems, data)
    listed = ", ".join(f"{_name(s)} ({s.profile})" for s in states)
    return Finding("instances", True, f"all {len(states)} instance(s) on the Pydantic path", [listed], data)


def _window_text(options: CheckOptions) -> str:
    return f"in the last {options.window_s:g}s" if options.window_s > 0 else "since each instance started"


def _counter_finding(
    name: str,
    *,
    breakdown: str,
    what: str,
    before: Mapping[str, LiveState],
    after: list[LiveState],
    options: CheckOptions,
    at_ms: int,
) -> Finding:
    found: dict[str, dict[str, int]] = {}
    for s in after:
        delta = counter_delta(before.get(_name(s)) if options.window_s > 0 else None, s, breakdown)
        if delta:
            found[_name(s)] = delta
    window = _window_text(options)
    if not found:
        uptimes = ", ".join(f"{_name(s)} up {s.uptime_s(at_ms):.0f}s" for s in after)
        return Finding(name, True, f"no {what} {window}", [uptimes] if uptimes else [], found)
    details = [f"{inst}: " + ", ".join(f"{k}={v}" for k, v in sorted(d.items())) for inst, d in found.items()]
    return Finding(name, False, f"{what} {window}", details, found)


def _range(start: str) -> str:
    if start == "-":
        return "from the beginning"
    return f"after {start[1:]}" if start.startswith("(") else f"from {start}"


async def _streams(
    redis: AsyncClient, keys: KeySpace, states: list[LiveState], options: CheckOptions
) -> Finding:
    scans = []
    for topic in Topic:
        producer = next(s for s in ServiceName if s.produces is topic)
        started = [s.started_ms for s in states if s.service == producer.value and not s.is_comparator]
        scans.append(
            await scan_topic(
                redis,
                keys,
                topic,
                limit=options.scan,
                producer_started_ms=min(started) if started else None,
                since_all=options.since_all,
            )
        )
    data = [s.to_dict() for s in scans]
    details = []
    for scan in scans:
        line = f"{scan.topic.value}_stream: {scan.scanned} scanned {_range(scan.start)} ({scan.start_reason})"
        if not scan.ok:
            line += f"; {scan.offenders} lack fields (written by {scan.producer.value})"
            line += "".join(f"\n    {e.stream_id}: no {', '.join(e.missing)}" for e in scan.examples)
        details.append(line)
    bad = [s for s in scans if not s.ok]
    if bad:
        who = ", ".join(f"{s.topic.value} (producer {s.producer.value})" for s in bad)
        return Finding("streams", False, f"entries without api_version/timestamp in {who}", details, data)
    total = sum(s.scanned for s in scans)
    return Finding(
        "streams", True, f"{total} entries scanned, all carry api_version and timestamp", details, data
    )


async def _dead_letters(redis: AsyncClient, keys: KeySpace, options: CheckOptions) -> Finding:
    data = await review_dead_letters(redis, keys, options.dlq_reviewed_before)
    details = [
        f"{t}_dlq: {d['entries']} entries, {d['unreviewed']} unreviewed"
        + (f" (reviewed through {d['reviewed_through']})" if d.get("reviewed_through") else "")
        for t, d in data.items()
    ]
    unreviewed = sum(d["unreviewed"] for d in data.values())
    if unreviewed == 0:
        return Finding("dead_letters", True, "no unreviewed dead letters", details, data)
    if options.allow_dlq:
        summary = f"{unreviewed} unreviewed dead letters (allowed by --allow-dlq)"
        return Finding("dead_letters", True, summary, details, data)
    hint = "inspect with `cdb dlq list`, fix and `cdb dlq replay`, then record it with `cdb dlq review`"
    return Finding("dead_letters", False, f"{unreviewed} unreviewed dead letters; {hint}", details, data)


def _shadow(
    before: Mapping[str, LiveState], after: list[LiveState], options: CheckOptions, at_ms: int
) -> Finding:
    finding = _counter_finding(
        "shadow",
        breakdown="shadow_by_field",
        what="shadow mismatches",
        before=before,
        after=after,
        options=options,
        at_ms=at_ms,
    )
    if finding.ok and not any(s.shadow for s in after):
        finding.summary += " (shadow mode is off everywhere: no comparison evidence, not required)"
    later = []
    for s in after:
        since = before.get(_name(s)) if options.window_s > 0 else None
        grown = counter_delta(since, s, "shadow_later_by_version")
        if grown:
            later.append(f"{_name(s)}: " + ", ".join(f"{k}={v}" for k, v in sorted(grown.items())))
    if later:
        finding.details.append(
            "later contract versions the legacy path cannot read (not compared, not mismatches): "
            + "; ".join(later)
        )
    return finding


async def check_cutover(
    redis: AsyncClient,
    keys: KeySpace,
    options: CheckOptions = CheckOptions(),
    *,
    sleep: Sleep = asyncio.sleep,
) -> CutoverReport:
    """Gather the evidence (waiting ``options.window_s`` between two snapshots) and judge it.

    The streams are scanned in as many partitions as the running pipeline recorded
    (``KeySpace.topology()``), whatever ``keys.partitions`` says."""
    from core.redis.topology import read_partitions

    keys = keys.with_partitions(await read_partitions(redis, keys) or keys.partitions)
    # A cleanly stopped instance's last report (core.status) is history, not a running path.
    first = [s for s in await read_live_states(redis, keys) if not s.stopped]
    if options.window_s > 0:
        await sleep(options.window_s)
        states = [s for s in await read_live_states(redis, keys) if not s.stopped]
    else:
        states = first
    before = {_name(s): s for s in first}
    at = now_ms()
    findings = [
        _instances(states, at),
        _counter_finding(
            "defaults",
            breakdown="defaults_by_field",
            what="defaults filled",
            before=before,
            after=states,
            options=options,
            at_ms=at,
        ),
        await _streams(redis, keys, states, options),
        await _dead_letters(redis, keys, options),
        _shadow(before, states, options, at),
    ]
    return CutoverReport(keys.prefix, at, options, findings)
