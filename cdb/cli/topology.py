"""``cdb topology``: show or change the pipeline's recorded partition count (operator only).

Services record the count once (``SETNX``) and may never change it; these commands are
the deliberate change, run with ``REDIS_URL`` logged in as ``cdb-operator`` after every
instance was stopped and the consumer groups drained (docs/scaling.md). Each service's
recorded ``PARTITION_LEASE_MS`` belongs to the same check: ``show`` lists them, and ``set``
and ``reset`` both clear them (each service's next start records its own).

``set`` and ``reset`` refuse (exit 2, nothing changed) while any instance of the pipeline
reports live state, as ``cdb dlq catch-up`` does for its consumer: running instances keep
the count they started with (a ``set`` under them made the status lie and every restart
refuse), and a stale one (stopped uncleanly less than ~20 s ago) may be hung, not gone.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, TypeVar

import typer
from redis import RedisError
from redis.exceptions import NoPermissionError

from cdb.cli.options import (
    DEFAULT_REDIS_OPTIONS,
    AsJson,
    RedisOptions,
    open_sync_target,
    unreachable,
    with_redis_options,
)
from cdb.cli.output import console, exit_with, print_json
from core.errors import CdbError, TransportError
from core.redis.modes import SyncClient
from core.redis.topology import (
    read_lease_settings_sync,
    read_partitions_sync,
    reset_topology_sync,
    set_topology_sync,
)
from core.status import running_instances
from core.topics import KeySpace, ServiceName

T = TypeVar("T")

app = typer.Typer(help="The pipeline's recorded partition count (TOPIC_PARTITIONS).", no_args_is_help=True)


def _on_pipeline(
    redis_options: RedisOptions, action: Callable[[SyncClient, KeySpace], T]
) -> tuple[T, KeySpace]:
    """``action`` on the pipeline's Redis and key space, and that key space; a bad option, no
    answer or a refused command exits with its one-line error."""
    try:
        target = redis_options.target()
        client, keys = open_sync_target(target), redis_options.keys()
    except CdbError as exc:
        exit_with(exc)
    try:
        return action(client, keys), keys
    except RedisError as exc:
        exit_with(_refused(target.url, exc))
    except CdbError as exc:
        exit_with(exc)


def _refuse_while_running(client: SyncClient, keys: KeySpace, command: str) -> None:
    running = running_instances(client, keys)  # comparators too: they read the partition streams
    if not running:
        return
    names = ", ".join(f"{s.service}/{s.instance} ({'stale' if s.is_stale() else 'live'})" for s in running)
    raise CdbError(
        f"{len(running)} instance(s) of the pipeline report live state: {names}; nothing changed: "
        "stop every instance first (a clean stop reports it stopped; after a crash the report "
        f"expires about 20 s after the last one), let the groups drain, then run {command} again"
    )


def _refused(url: str, exc: RedisError) -> TransportError:
    if isinstance(exc, NoPermissionError):
        return TransportError(f"Redis refused the change ({exc}); log in as cdb-operator (REDIS_URL)")
    return unreachable(url, exc)


@app.command("show")
@with_redis_options
def show(as_json: AsJson = False, redis: RedisOptions = DEFAULT_REDIS_OPTIONS) -> None:
    """The partition count the running pipeline recorded (none: the first start records one),
    and each service's recorded lease TTL."""

    def read(client: SyncClient, keys: KeySpace) -> tuple[int | None, dict[ServiceName, int | None]]:
        return read_partitions_sync(client, keys), read_lease_settings_sync(client, keys)

    (recorded, leases), keys = _on_pipeline(redis, read)
    if as_json:
        lease_ms = {s.value: ms for s, ms in leases.items()}
        print_json({"key": keys.topology(), "partitions": recorded, "partition_lease_ms": lease_ms})
        return
    shown = "none recorded (the first service start records its TOPIC_PARTITIONS)"
    console.print(f"{keys.topology()}: {recorded if recorded is not None else shown}")
    for service, ms in leases.items():
        console.print(f"{keys.lease_setting(service)}: PARTITION_LEASE_MS={ms if ms is not None else '?'}")


@app.command("set")
@with_redis_options
def set_count(
    partitions: Annotated[int, typer.Argument(min=1, help="The new partition count.")],
    redis: RedisOptions = DEFAULT_REDIS_OPTIONS,
) -> None:
    """Record PARTITIONS as the pipeline's count, replacing the old one, and clear the recorded
    lease TTLs (each service's next start records its own); refused while any instance of the
    pipeline reports live state: stop every instance first."""

    def replace(client: SyncClient, keys: KeySpace) -> tuple[int | None, dict[ServiceName, int | None]]:
        _refuse_while_running(client, keys, "cdb topology set")
        before = read_partitions_sync(client, keys)
        return before, set_topology_sync(client, keys, partitions)

    (before, cleared), keys = _on_pipeline(redis, replace)
    console.print(f"{keys.topology()}: {before} -> {partitions}")
    if cleared:
        shown = ", ".join(f"{s.value} {ms if ms is not None else '?'}" for s, ms in cleared.items())
        console.print(f"lease TTLs cleared ({shown} ms): each service's next start records its own")


@app.command("reset")
@with_redis_options
def reset(redis: RedisOptions = DEFAULT_REDIS_OPTIONS) -> None:
    """Delete the recorded count and lease TTLs; the next service start records its own.
    Refused while any instance of the pipeline reports live state: stop every instance first."""

    def remove(client: SyncClient, keys: KeySpace) -> bool:
        _refuse_while_running(client, keys, "cdb topology reset")
        return reset_topology_sync(client, keys)

    removed, keys = _on_pipeline(redis, remove)
    console.print(f"{keys.topology()}: {'deleted' if removed else 'was not set'}")
