"""``cdb topology``: show or change the pipeline's recorded partition count (operator only).

Services record the count once (``SETNX``) and may never change it; these commands are
the deliberate change, run with ``REDIS_URL`` logged in as ``cdb-operator`` after every
instance was stopped and the consumer groups drained (docs/scaling.md).
"""

from __future__ import annotations

from typing import Annotated

import redis
import typer

from cdb.cli.options import (
    DEFAULT_REDIS_URL,
    AsJson,
    Prefix,
    RedisModeOption,
    RedisUrl,
    SentinelMaster,
    Sentinels,
    cli_target,
    open_sync_target,
    unreachable,
)
from cdb.cli.output import console, exit_with, print_json
from core.errors import CdbError, TransportError
from core.redis.modes import SyncClient
from core.redis.topology import read_partitions_sync, reset_topology_sync, set_topology_sync
from core.topics import KeySpace

app = typer.Typer(help="The pipeline's recorded partition count (TOPIC_PARTITIONS).", no_args_is_help=True)


def _client(url: str, mode: str, sentinels: str, master: str) -> SyncClient:
    try:
        return open_sync_target(cli_target(url, mode, sentinels, master))
    except CdbError as exc:
        exit_with(exc)


def _refused(url: str, exc: redis.RedisError) -> TransportError:
    if isinstance(exc, redis.exceptions.NoPermissionError):
        return TransportError(f"Redis refused the change ({exc}); log in as cdb-operator (REDIS_URL)")
    return unreachable(url, exc)


@app.command("show")
def show(
    redis_url: RedisUrl = DEFAULT_REDIS_URL,
    prefix: Prefix = "",
    as_json: AsJson = False,
    redis_mode: RedisModeOption = "",
    sentinels: Sentinels = "",
    sentinel_master: SentinelMaster = "",
) -> None:
    """The partition count the running pipeline recorded (none: the first start records one)."""
    keys = KeySpace(prefix)
    client = _client(redis_url, redis_mode, sentinels, sentinel_master)
    try:
        recorded = read_partitions_sync(client, keys)
    except redis.RedisError as exc:
        exit_with(_refused(redis_url, exc))
    if as_json:
        print_json({"key": keys.topology(), "partitions": recorded})
        return
    shown = "none recorded (the first service start records its TOPIC_PARTITIONS)"
    console.print(f"{keys.topology()}: {recorded if recorded is not None else shown}")


@app.command("set")
def set_count(
    partitions: Annotated[int, typer.Argument(min=1, help="The new partition count.")],
    redis_url: RedisUrl = DEFAULT_REDIS_URL,
    prefix: Prefix = "",
    redis_mode: RedisModeOption = "",
    sentinels: Sentinels = "",
    sentinel_master: SentinelMaster = "",
) -> None:
    """Record PARTITIONS as the pipeline's count, replacing the old one (stop every instance first)."""
    keys = KeySpace(prefix)
    client = _client(redis_url, redis_mode, sentinels, sentinel_master)
    try:
        before = read_partitions_sync(client, keys)
        set_topology_sync(client, keys, partitions)
    except redis.RedisError as exc:
        exit_with(_refused(redis_url, exc))
    except CdbError as exc:
        exit_with(exc)
    console.print(f"{keys.topology()}: {before} -> {partitions}")


@app.command("reset")
def reset(
    redis_url: RedisUrl = DEFAULT_REDIS_URL,
    prefix: Prefix = "",
    redis_mode: RedisModeOption = "",
    sentinels: Sentinels = "",
    sentinel_master: SentinelMaster = "",
) -> None:
    """Delete the recorded count; the next service start records its TOPIC_PARTITIONS."""
    keys = KeySpace(prefix)
    client = _client(redis_url, redis_mode, sentinels, sentinel_master)
    try:
        removed = reset_topology_sync(client, keys)
    except redis.RedisError as exc:
        exit_with(_refused(redis_url, exc))
    console.print(f"{keys.topology()}: {'deleted' if removed else 'was not set'}")
