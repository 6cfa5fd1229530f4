"""``cdb status``: every live service instance, as it reports itself to Redis.

This is how an operator sees that a flag flip took effect: the path, profile and
shadow columns come from the running process, not from configuration files. The
partitions column shows which partitions each instance owns now, out of the
pipeline's count (``TOPIC_PARTITIONS``, as recorded in ``KeySpace.topology()``).
An instance that stopped cleanly shows as stopped at once (its last report, kept
for ``STOPPED_TTL_S``); one that missed three reports in a row (crashed or hung) is
marked stale, and its key expires a little later (see :mod:`core.status`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import redis
from rich.markup import escape

from core.cli.options import (
    DEFAULT_REDIS_URL,
    AsJson,
    Prefix,
    RedisModeOption,
    RedisUrl,
    SentinelMaster,
    Sentinels,
    cli_target,
    open_async_target,
    unreachable,
)
from core.cli.output import console, exit_with, print_json, table
from core.errors import CdbError
from core.redis.modes import RedisTarget
from core.redis.topology import read_partitions
from core.status import STOPPED_TTL_S, LiveState, read_live_states
from core.topics import KeySpace
from core.utils.clock import now_ms

__all__ = ["instance_row", "load_pipeline", "load_states", "status"]

_COLUMNS = [
    "service",
    "instance",
    "path",
    "profile",
    "shadow",
    "partitions",
    "uptime",
    "handled",
    "published",
    "validation errors",
    "defaults filled",
    "dead letters",
    "shadow mismatches",
    "lag",
    "state",
]


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
        return "stopped"
    return "stale" if state.is_stale(at_ms) else "live"


def instance_row(state: LiveState, at_ms: int) -> dict[str, Any]:
    """The plain facts ``cdb status`` shows about one instance (the ``--json`` shape).

    ``handled`` counts stream entries the instance finished with (ok, invalid, dead
    lettered; retries are not finished); ``lag`` is undelivered plus pending entries
    of its input stream; the ``*_by_field`` maps name what the counts are made of.
    """
    c = state.counts
    handled = sum(_int(c, f"messages_{outcome}") for outcome in ("ok", "invalid", "dead_lettered"))
    return {
        "service": state.service,
        "instance": state.instance,
        "path": state.path,
        "profile": state.profile,
        "shadow": state.shadow,
        "version": state.version,
        "partitions": state.partitions,
        "owned": list(state.owned),
        "started_ms": state.started_ms,
        "reported_ms": state.reported_ms,
        "uptime_s": round(state.uptime_s(state.reported_ms if state.stopped else at_ms), 1),
        "last_report_age_s": round((at_ms - state.reported_ms) / 1000.0, 1),
        "stale": state.is_stale(at_ms),
        "state": _state(state, at_ms),
        "handled": handled,
        "published": _int(c, "published"),
        "validation_errors": _int(c, "validation_errors"),
        "validation_reasons": _breakdown(c, "validation_reasons"),
        "defaults_filled": _int(c, "defaults_filled"),
        "defaults_by_field": _breakdown(c, "defaults_by_field"),
        "dead_letters": _int(c, "dead_letters"),
        "shadow_compared": _int(c, "shadow_compared"),
        "shadow_mismatches": _int(c, "shadow_mismatches"),
        "shadow_by_field": _breakdown(c, "shadow_by_field"),
        "lag": _int(c, "lag") + _int(c, "pending"),
        "counts": dict(c),
    }


async def load_states(url: str, prefix: str, target: RedisTarget | None = None) -> list[LiveState]:
    """Every live-state document under ``prefix`` (``TransportError`` if Redis does not answer)."""
    return (await load_pipeline(target or cli_target(url), prefix))[0]


async def load_pipeline(target: RedisTarget, prefix: str) -> tuple[list[LiveState], int | None]:
    """The live states under ``prefix`` and the partition count the pipeline recorded."""
    client = await open_async_target(target)
    try:
        keys = KeySpace(prefix)
        return await read_live_states(client, keys), await read_partitions(client, keys)
    except (redis.RedisError, OSError) as exc:
        raise unreachable(target.url, exc) from exc
    finally:
        await client.aclose()


def _uptime(seconds: float) -> str:
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


def _fields(by_field: Mapping[str, int], total: int) -> str:
    if not total:
        return "0"
    detail = ", ".join(f"{k}={v}" for k, v in sorted(by_field.items()))
    return f"{total} ({detail})" if detail else str(total)


def _partitions(row: Mapping[str, Any]) -> str:
    total, owned = int(row["partitions"]), row["owned"]
    if total == 1:
        return "1"
    mine = ",".join(f"p{p}" for p in owned) or "none"
    return f"{mine} of {total}"


def _cells(row: Mapping[str, Any]) -> list[Any]:
    # Cells are rendered as rich markup: escape what an instance reports about itself.
    state = {
        "stale": f"[bold red]STALE ({row['last_report_age_s']:.0f}s)[/]",
        "stopped": f"[dim]stopped ({row['last_report_age_s']:.0f}s ago)[/]",
    }.get(row["state"], "[green]live[/]")
    path = f"[{'cyan' if row['path'] == 'pydantic' else 'yellow'}]{escape(row['path'])}[/]"
    shadow = _fields(row["shadow_by_field"], row["shadow_mismatches"]) if row["shadow"] else "-"
    return [
        escape(row["service"]),
        escape(row["instance"]),
        path,
        escape(row["profile"] or "-"),
        "on" if row["shadow"] else "off",
        _partitions(row),
        _uptime(row["uptime_s"]),
        row["handled"],
        row["published"],
        _fields(row["validation_reasons"], row["validation_errors"]),
        _fields(row["defaults_by_field"], row["defaults_filled"]),
        row["dead_letters"],
        shadow,
        row["lag"],
        state,
    ]


def status(
    redis_url: RedisUrl = DEFAULT_REDIS_URL,
    prefix: Prefix = "",
    as_json: AsJson = False,
    redis_mode: RedisModeOption = "",
    sentinels: Sentinels = "",
    sentinel_master: SentinelMaster = "",
) -> None:
    """Show every live service instance: path, profile, shadow, partitions, uptime and counters."""
    try:
        target = cli_target(redis_url, redis_mode, sentinels, sentinel_master)
        states, partitions = asyncio.run(load_pipeline(target, prefix))
    except CdbError as exc:
        exit_with(exc)
    at = now_ms()
    rows = [instance_row(s, at) for s in states]
    if as_json:
        print_json({"prefix": prefix, "checked_ms": at, "partitions": partitions, "instances": rows})
        return
    if not rows:
        console.print(f"no live service instance under key prefix {prefix!r}")
        return
    title = f"Live instances (key prefix {prefix!r}, {partitions or 1} partition(s))"
    console.print(table(title, _COLUMNS, [_cells(r) for r in rows]))
    stale = sum(1 for r in rows if r["stale"])
    if stale:
        console.print(f"[bold red]{stale} stale instance(s)[/]: crashed or hung; the key expires by itself")
    stopped = sum(1 for r in rows if r["state"] == "stopped")
    if stopped:
        console.print(f"{stopped} stopped instance(s): clean stops, shown for {STOPPED_TTL_S:.0f} s")
