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
    DEFAULT_REDIS_OPTIONS,
    AsJson,
    RedisOptions,
    open_sync_target,
    with_redis_options,
)
from cdb.cli.output import console, exit_with, print_json, table
from core.codec import Codec, build_codec
from core.codec_modes import default_profile
from core.errors import CdbError, ConfigError
from core.redis.dlq_catchup import CatchUpPlan, catch_up
from core.redis.dlq_lock import ReplayInProgressError
from core.redis.modes import SyncClient
from core.redis.topology import read_partitions_sync
from core.settings import version_list
from core.topics import CodecPath, KeySpace, Profile, ServiceName, Topic
from core.versions.codec import VersionedCodec
from core.versions.declaration import known_versions

__all__ = ["Retired", "catch_up_command", "consumer_codec", "pipeline_redis"]

Retired = Annotated[
    str,
    typer.Option(
        "--retired",
        help="Versions of the topic its consumer has retired (its RETIRED_VERSIONS_<TOPIC>), "
        "comma-separated; default: none (it reads every declared version).",
    ),
]


def pipeline_redis(redis: RedisOptions) -> tuple[SyncClient, KeySpace]:
    """The pipeline's Redis (any mode) and its key space, split as the pipeline recorded it;
    a bad option or a Redis that does not answer exits with its one-line error."""
    try:
        client = open_sync_target(redis.target())
        keys = redis.keys()
    except CdbError as exc:
        exit_with(exc)
    return client, keys.with_partitions(read_partitions_sync(client, keys) or 1)


def consumer_codec(
    topic: Topic, path: CodecPath, profile: Profile | None, max_bytes: int, retired: str
) -> Codec:
    """The codec the consuming service of ``topic`` reads with on ``path``: on the Pydantic path it
    reads every declared contract version but the ``retired`` ones (as ``core.codec.codec_for``);
    a bad ``--retired`` exits with its one-line error."""
    codec = build_codec(path, profile or default_profile(), max_bytes=max_bytes)
    if path is not CodecPath.PYDANTIC:
        return codec  # the legacy path reads v1.0 only
    gone = version_list(retired)
    if any(v not in known_versions(topic) for v in gone):
        exit_with(ConfigError("--retired", retired, known_versions(topic), "comma-separated"))
    return VersionedCodec(codec, max_bytes=max_bytes, retired={topic: gone})


@with_redis_options
def catch_up_command(
    topic: Annotated[
        Topic, typer.Option("--topic", help="The topic whose consumer re-reads its dead letters.")
    ],
    path: Annotated[
        CodecPath, typer.Option("--path", help="Path the consuming service will run when started again.")
    ] = CodecPath.PYDANTIC,
    profile: Annotated[
        Profile | None, typer.Option("--profile", help="Its profile then; default: the installed default.")
    ] = None,
    max_bytes: Annotated[
        int,
        typer.Option("--max-bytes", envvar="MAX_MESSAGE_BYTES", min=1, help="Its MAX_MESSAGE_BYTES then."),
    ] = 65_536,
    retired: Retired = "",
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what it would do; change nothing.")
    ] = False,
    as_json: AsJson = False,
    redis: RedisOptions = DEFAULT_REDIS_OPTIONS,
) -> None:
    """Rewind the stopped consumer's group to just before the first dead letter it would accept
    now, so that, started again, it reads them in their original order; exit 1 if refused (or
    while another replay or catch-up of the topic is in progress: nothing changed)."""
    if not any(s.consumes is topic for s in ServiceName):
        exit_with(CdbError(f"{topic.value} has no consuming service in the pipeline: nothing re-reads it"))
    client, keys = pipeline_redis(redis)
    codec = consumer_codec(topic, path, profile, max_bytes, retired)
    try:
        plan = catch_up(client, keys, topic, codec, dry_run=dry_run)
    except ReplayInProgressError as exc:
        exit_with(exc, code=1)
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
            p.read_from or "-",
            len(p.letters),
            len(p.still_invalid),
            p.handled_again,
            p.pending_acked,
        ]
        for p in plan.partitions
    ]
    title = f"Catch-up of {plan.topic.value} for {plan.service.value}" + (" (dry run)" if dry_run else "")
    columns = [
        "stream",
        "group was at",
        "reads again from",
        "letters",
        "still invalid",
        "handled again",
        "acked",
    ]
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
            "its state up to the first of them and reads on from there in order (letters marked)",
            highlight=False,
        )
    elif not plan.letters:
        console.print("nothing to catch up: no unresolved dead letter that decodes now", highlight=False)
