"""``cdb topology``: show or change the pipeline's recorded partition count (operator only).

Services record the count once (``SETNX``) and may never change it; these commands are
the deliberate change, run with ``REDIS_URL`` logged in as ``cdb-operator`` after every
instance was stopped and the consumer groups drained (docs/scaling.md).
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
from core.redis.topology import read_partitions_sync, reset_topology_sync, set_topology_sync
from core.topics import KeySpace

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


def _refused(url: str, exc: RedisError) -> TransportError:
    if isinstance(exc, NoPermissionError):
        return TransportError(f"Redis refused the change ({exc}); log in as cdb-operator (REDIS_URL)")
    return unreachable(url, exc)


@app.command("show")
@with_redis_options
def show(as_json: AsJson = False, redis: RedisOptions = DEFAULT_REDIS_OPTIONS) -> None:
    """The partition count the running pipeline recorded (none: the first start records one)."""
    recorded, keys = _on_pipeline(redis, read_partitions_sync)
    if as_json:
        print_json({"key": keys.topology(), "partitions": recorded})
        return
    shown = "none recorded (the first service start records its TOPIC_PARTITIONS)"
    console.print(f"{keys.topology()}: {recorded if recorded is not None else shown}")


@app.command("set")
@with_redis_options
def set_count(
    partitions: Annotated[int, typer.Argument(min=1, help="The new partition count.")],
    redis: RedisOptions = DEFAULT_REDIS_OPTIONS,
) -> None:
    """Record PARTITIONS as the pipeline's count, replacing the old one (stop every instance first)."""

    def replace(client: SyncClient, keys: KeySpace) -> int | None:
        before = read_partitions_sync(client, keys)
        set_topology_sync(client, keys, partitions)
        return before

    before, keys = _on_pipeline(redis, replace)
    console.print(f"{keys.topology()}: {before} -> {partitions}")


@app.command("reset")
@with_redis_options
def reset(redis: RedisOptions = DEFAULT_REDIS_OPTIONS) -> None:
    """Delete the recorded count; the next service start records its TOPIC_PARTITIONS."""
    removed, keys = _on_pipeline(redis, reset_topology_sync)
    console.print(f"{keys.topology()}: {'deleted' if removed else 'was not set'}")
