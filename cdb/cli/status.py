"""``cdb status``: every live service instance, as it reports itself to Redis.

This is how an operator sees that a flag flip took effect: the path, profile and
shadow columns come from the running process, not from configuration files. The
partitions column shows which partitions each instance owns now, out of the
pipeline's count (``TOPIC_PARTITIONS``, as recorded in ``KeySpace.topology()``).
An instance that stopped cleanly shows as stopped at once (its last report, kept
for ``STOPPED_TTL_S``); one that stopped on an error (refused to start, or failed
later) shows as failed, with the error's message below the table (``error`` in
``--json``; kept for ``FAILED_TTL_S``); one that missed three reports in a row (crashed or hung) is
marked stale, and its key expires a little later (see :mod:`core.status`).
A partition of a consuming service that no live instance owns, with entries waiting
in it, is named below the table: those entries are in no instance's lag.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import asdict
from typing import Annotated, Any

import redis
import typer
from rich.console import Group, RenderableType
from rich.live import Live
from rich.markup import escape
from rich.text import Text

from cdb.cli.options import (
    DEFAULT_REDIS_OPTIONS,
    AsJson,
    RedisOptions,
    cli_target,
    open_async_target,
    unreachable,
    with_redis_options,
)
from cdb.cli.output import exit_with, print_json
from cdb.cli.status_table import status_console, status_table
from core.codec_modes import mode_of
from core.errors import CdbError
from core.redis.modes import RedisTarget
from core.redis.ownership import Unowned, unowned_partitions
from core.redis.topology import read_partitions
from core.status import FAILED_TTL_S, STOPPED_TTL_S, LiveState, read_live_states
from core.topics import KeySpace
from core.utils.clock import now_ms

__all__ = ["instance_row", "load_pipeline", "load_states", "status"]


def _int(counts: Mapping[str, Any], name: str) -> int:
    value = counts.get(name, 0)
    return int(value) if isinstance(value, int | float) else 0


def _breakdown(counts: Mapping[str, Any], name: str) -> dict[str, int]:
    value = counts.get(name, {})
    if not isinstance(value, Mapping):
        return {}
    return {str(k): int(v) for k, v in value.items() if isinstance(v, int | float) and v}


def _state(state: LiveState, at_ms: int) -> str:
    if state.stopped:
        return "failed" if state.failed else "stopped"
    return "stale" if state.is_stale(at_ms) else "live"


def instance_row(state: LiveState, at_ms: int) -> dict[str, Any]:
    """The plain facts ``cdb status`` shows about one instance (the ``--json`` shape).

    ``handled`` counts stream entries the instance finished with (ok, invalid, dead
    lettered; retries are not finished); ``lag`` is undelivered plus pending entries
    of its input stream; the ``*_by_field`` maps name what the counts are made of;
    ``ignored`` counts valid messages dropped on purpose, ``ignored_by_reason`` by
    :class:`~core.metrics.IgnoreReason` (non-zero reasons only).
    """
    c = state.counts
    handled = sum(_int(c, f"messages_{outcome}") for outcome in ("ok", "invalid", "dead_lettered"))
    if state.is_comparator:
        handled = _int(c, "shadow_compared")  # a comparator handles nothing: it compares
    return {
        "service": state.service,
        "instance": state.instance,
        "path": state.path,
        "profile": state.profile,
        "shadow": state.shadow,
        "mode": mode_of(state.path, state.profile, shadow=state.shadow).value,
        "role": state.role,
        "version": state.version,
        "partitions": state.partitions,
        "owned": list(state.owned),
        "reads": {topic: list(versions) for topic, versions in state.reads.items()},
        "writes": dict(state.writes),
        "versions_seen": {t: dict(v) for t, v in state.versions_seen.items()},
        "started_ms": state.started_ms,
        "reported_ms": state.reported_ms,
        "uptime_s": round(state.uptime_s(state.reported_ms if state.stopped else at_ms), 1),
        "last_report_age_s": round((at_ms - state.reported_ms) / 1000.0, 1),
        "stale": state.is_stale(at_ms),
        "state": _state(state, at_ms),
        "error": state.error,
        "handled": handled,
        "published": _int(c, "published"),
        "validation_errors": _int(c, "validation_errors"),
        "validation_reasons": _breakdown(c, "validation_reasons"),
        "defaults_filled": _int(c, "defaults_filled"),
        "defaults_by_field": _breakdown(c, "defaults_by_field"),
        "dead_letters": _int(c, "dead_letters"),
        "ignored": _int(c, "ignored"),
        "ignored_by_reason": _breakdown(c, "ignored_by_reason"),
        "shadow_compared": _int(c, "shadow_compared"),
        "shadow_mismatches": _int(c, "shadow_mismatches"),
        "shadow_by_field": _breakdown(c, "shadow_by_field"),
        "shadow_later_version": sum(_breakdown(c, "shadow_later_by_version").values()),
        "shadow_later_by_version": _breakdown(c, "shadow_later_by_version"),
        "duplicates": _int(c, "duplicate_orders"),
        "desired_path": c.get("desired_path"),
        "wire_shape": _breakdown(c, "wire_shape"),
        "sources": dict(c.get("sources") or {}),
        "lag": _int(c, "lag") + _int(c, "pending"),
        "counts": dict(c),
    }


async def load_states(url: str, prefix: str, target: RedisTarget | None = None) -> list[LiveState]:
    """Every live-state document under ``prefix`` (``TransportError`` if Redis does not answer)."""
    return (await load_pipeline(target or cli_target(url), prefix))[0]


async def load_pipeline(target: RedisTarget, prefix: str) -> tuple[list[LiveState], int | None]:
    """The live states under ``prefix`` and the partition count the pipeline recorded."""
    states, partitions, _ = await _load(target, prefix, unowned=False)
    return states, partitions


async def _load(
    target: RedisTarget, prefix: str, *, unowned: bool = True
) -> tuple[list[LiveState], int | None, list[Unowned]]:
    client = await open_async_target(target)
    try:
        keys = KeySpace(prefix)
        states, partitions = await read_live_states(client, keys), await read_partitions(client, keys)
        free = (
            await unowned_partitions(client, keys.with_partitions(partitions or 1), states, now_ms())
            if unowned
            else []
        )
        return states, partitions, free
    except (redis.RedisError, OSError) as exc:
        raise unreachable(target.url, exc) from exc
    finally:
        await client.aclose()


@with_redis_options
def status(
    as_json: AsJson = False,
    wide: Annotated[bool, typer.Option("--wide", help="Every column (needs about 200 columns).")] = False,
    watch: Annotated[bool, typer.Option("--watch", help="Refresh in place until Ctrl-C.")] = False,
    interval: Annotated[float, typer.Option(help="Seconds between refreshes with --watch.", min=0.1)] = 2.0,
    times: Annotated[int, typer.Option(hidden=True, help="Stop --watch after this many refreshes.")] = 0,
    redis: RedisOptions = DEFAULT_REDIS_OPTIONS,
) -> None:
    """Show every live service instance: path, profile, shadow, uptime, counters and state.

    Fits 80 columns by default; --wide shows every column, --json the full facts.
    """
    try:
        target, prefix = redis.target(), redis.prefix
        if watch and not as_json:
            _watch(target, prefix, wide=wide, interval=interval, times=times)
            return
        states, partitions, unowned = asyncio.run(_load(target, prefix))
    except CdbError as exc:
        exit_with(exc)
    at = now_ms()
    rows = [instance_row(s, at) for s in states]
    if as_json:
        print_json(
            {
                "prefix": prefix,
                "checked_ms": at,
                "partitions": partitions,
                "instances": rows,
                "unowned": [asdict(u) for u in unowned],
            }
        )
        return
    status_console().print(_view(prefix, partitions, rows, unowned, wide=wide))


def _view(
    prefix: str, partitions: int | None, rows: list[dict[str, Any]], unowned: list[Unowned], *, wide: bool
) -> RenderableType:
    if not rows:
        return Text(f"no live service instance under key prefix {prefix!r}")
    title = f"Live instances, key prefix {prefix!r}, {partitions or 1} partition(s)"
    parts: list[RenderableType] = [status_table(title, rows, wide=wide)]
    stale = sum(1 for r in rows if r["stale"])
    if stale:
        note = f"[bold red]{stale} stale[/]: crashed or hung; the key expires by itself"
        parts.append(Text.from_markup(note))
    stopped = sum(1 for r in rows if r["state"] == "stopped")
    if stopped:
        parts.append(Text(f"{stopped} stopped instance(s): clean stops, shown for {STOPPED_TTL_S:.0f} s"))
    for row in rows:
        if row["state"] == "failed":  # why it stopped: what the operator fixes before a restart
            who = f"{escape(row['service'])} {escape(row['instance'])}"
            parts.append(Text.from_markup(f"[bold red]{who} failed[/]: {escape(row['error'] or '?')}"))
    if any(r["state"] == "failed" for r in rows):
        parts.append(Text(f"failed: stopped on an error (not a crash), shown for {FAILED_TTL_S:.0f} s"))
    for row in rows:
        for source, stats in sorted(row["sources"].items()):
            parts.append(Text(_source_line(row["instance"], source, stats)))
    for free in unowned:
        if free.waiting:  # (with nothing waiting, the stopped or stale rows above tell it all)
            parts.append(Text.from_markup(_unowned_line(free)))
    # Only what still runs: a stopped instance was replaced (or is meant to stay down).
    pending = [
        r
        for r in rows
        if r["state"] not in ("stopped", "failed") and r["desired_path"] and r["desired_path"] != r["path"]
    ]
    if pending:
        names = ", ".join(escape(r["instance"]) for r in pending)
        parts.append(Text.from_markup(f"[bold yellow]env file asks for another path[/]: recreate {names}"))
    return Group(*parts)


def _unowned_line(free: Unowned) -> str:
    which = "partition" if len(free.partitions) == 1 else "partitions"
    numbers = ", ".join(str(p) for p in free.partitions)
    line = f"{escape(free.service)} {which} {numbers}: no live owner, {free.waiting:,} entries waiting"
    return f"[bold yellow]{line}[/]"


def _source_line(instance: str, source: str, stats: Mapping[str, Any]) -> str:
    frames = stats.get("bad_frames_by_reason") or {}
    detail = ", ".join(f"{k}={v}" for k, v in sorted(frames.items()))
    return (
        f"{instance} source {source}: reconnects {stats.get('reconnects', 0)}, refused symbols "
        f"{stats.get('refused_symbols', 0)}, bad frames {sum(frames.values())}"
        + (f" ({detail})" if detail else "")
    )


def _watch(target: RedisTarget, prefix: str, *, wide: bool, interval: float, times: int) -> None:
    console = status_console()

    def frame() -> RenderableType:
        stamp = Text(f"refreshed {time.strftime('%H:%M:%S')} every {interval:g}s; Ctrl-C to stop")
        try:
            states, partitions, unowned = asyncio.run(_load(target, prefix))
        except CdbError as exc:  # Redis away for a moment: say so and try again next tick
            return Group(Text.from_markup(f"[bold red]error:[/] {escape(str(exc))}"), stamp)
        at = now_ms()
        rows = [instance_row(s, at) for s in states]
        return Group(_view(prefix, partitions, rows, unowned, wide=wide), stamp)

    done = 0
    with Live(frame(), console=console, auto_refresh=False, transient=False) as live:
        try:
            while True:
                done += 1
                if times and done >= times:
                    return
                time.sleep(interval)
                live.update(frame(), refresh=True)
        except KeyboardInterrupt:
            return
