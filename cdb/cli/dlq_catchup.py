"""``cdb dlq catch-up``: let a stopped consumer re-read its dead-lettered entries in their original order.

The recovery after a strict consumer dead-lettered messages it should have read (for
example a forced strict cutover while a producer was still legacy): stop the consumer,
roll its flags back, run this, start it again. See :mod:`core.redis.dlq_catchup` and
docs/migration-runbook.md ("Recovery after a forced strict cutover").
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape

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
)
from cdb.cli.output import console, exit_with, print_json, table
from core.codec import build_codec
from core.errors import CdbError
from core.redis.dlq_catchup import CatchUpPlan, catch_up
from core.redis.modes import SyncClient
from core.redis.topology import read_partitions_sync
from core.topics import CodecPath, KeySpace, Profile, ServiceName, Topic

__all__ = ["catch_up_command", "pipeline_redis"]


def pipeline_redis(
    url: str, mode: str, sentinels: str, master: str, prefix: str
) -> tuple[SyncClient, KeySpace]:
    """The pipeline's Redis (any mode) and its key space, split as the pipeline recorded it."""
    try:
        client = open_sync_target(cli_target(url, mode, sentinels, master))
    except CdbError as exc:
        exit_with(exc)
    keys = KeySpace(prefix)
    return client, keys.with_partitions(read_partitions_sync(client, keys) or 1)


def catch_up_command(
    topic: Annotated[
        Topic, typer.Option("--topic", help="The topic whose consumer re-reads its dead letters.")
    ],
    path: Annotated[
        CodecPath, typer.Option("--path", help="Path the consuming service will run when started again.")
    ] = CodecPath.PYDANTIC,
    profile: Annotated[Profile, typer.Option("--profile", help="Its profile then.")] = Profile.LENIENT,
    max_bytes: Annotated[
        int,
        typer.Option("--max-bytes", envvar="MAX_MESSAGE_BYTES", min=1, help="Its MAX_MESSAGE_BYTES then."),
    ] = 65_536,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what it would do; change nothing.")
    ] = False,
    redis_url: RedisUrl = DEFAULT_REDIS_URL,
    prefix: Prefix = "",
    as_json: AsJson = False,
    redis_mode: RedisModeOption = "",
    sentinels: Sentinels = "",
    sentinel_master: SentinelMaster = "",
) -> None:
    """Rewind the stopped consumer's group to just before the first dead letter it would accept
    now, so that, started again, it reads them in their original order; exit 1 if refused."""
    if not any(s.consumes is topic for s in ServiceName):
        exit_with(CdbError(f"{topic.value} has no consuming service in the pipeline: nothing re-reads it"))
    client, keys = pipeline_redis(redis_url, redis_mode, sentinels, sentinel_master, prefix)
    codec = build_codec(path, profile, max_bytes=max_bytes)
    plan = catch_up(client, keys, topic, codec, dry_run=dry_run)
    if as_json:
        print_json(plan.to_dict())
    else:
        _print(plan, dry_run=dry_run)
    raise SystemExit(1 if plan.refused else 0)


def _print(plan: CatchUpPlan, *, dry_run: bool) -> None:
    rows = [
        [
            p.stream,
            p.position or "(no group)",
            p.rewind_to or "-",
            len(p.letters),
            len(p.still_invalid),
            p.handled_again,
            p.pending_acked,
        ]
        for p in plan.partitions
    ]
    title = f"Catch-up of {plan.topic.value} for {plan.service.value}" + (" (dry run)" if dry_run else "")
    columns = ["stream", "group was at", "rewind to", "letters", "still invalid", "handled again", "acked"]
    console.print(table(title, columns, [[escape(str(c)) for c in r] for r in rows]))
    if plan.gone:
        console.print(
            f"{len(plan.gone)} letters' original entries are no longer in the stream: "
            "replay them with cdb dlq replay",
            highlight=False,
        )
    if plan.refused:
        console.print(f"[bold red]refused:[/] {escape(plan.refused)}", highlight=False)
    elif plan.applied:
        console.print(
            f"{plan.letters} dead letters will count when {plan.service.value} starts again: it rebuilds "
            "its state up to the rewind point and reads on from there in order (letters marked)",
            highlight=False,
        )
    elif not plan.letters:
        console.print("nothing to catch up: no unresolved dead letter that decodes now", highlight=False)
