"""``cdb dlq list / show / replay / review``: inspect dead letters, put fixed ones back, record a review.

``replay`` re-validates each selected letter with the codec the consuming service
uses now (``--path``/``--profile``, default pydantic and the installed default profile; on the
Pydantic path it reads every declared contract version but those given with ``--retired``),
publishes what decodes into the topic stream, in the contract version it was written in, and
leaves what still fails in the dead-letter stream. It deletes replayed letters only with
``--delete-replayed``; otherwise it marks them as replayed.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.markup import escape

from cdb.cli.dlq_catchup import Retired, catch_up_command, consumer_codec, pipeline_redis
from cdb.cli.options import (
    DEFAULT_REDIS_OPTIONS,
    AsJson,
    RedisOptions,
    with_redis_options,
)
from cdb.cli.output import console, exit_with, print_json, shown, table
from core.codec_modes import default_profile
from core.errors import CdbError
from core.redis.dead_letters import DeadLetter, is_entry_id
from core.redis.dlq_impact import entry_key
from core.redis.dlq_lock import ReplayInProgressError
from core.redis.dlq_replay import (
    IgnoredPolicy,
    ReplayReport,
    ReplayStatus,
    find_letter,
    replay_letters,
    replay_marks,
)
from core.redis.modes import SyncClient, reply_text
from core.topics import CodecPath, KeySpace, Profile, Topic

__all__ = ["app"]

app = typer.Typer(help="Inspect dead letters per topic and replay fixed ones.", no_args_is_help=True)

TopicOption = Annotated[Topic | None, typer.Option("--topic", help="Only this topic (default: all).")]


def _when(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S") if ms else "-"


def _first_error(letter: DeadLetter) -> str:
    if not letter.errors:
        return letter.reason
    err = letter.errors[0]
    loc = ".".join(str(p) for p in err.get("loc", ())) or "<message>"
    more = f" (+{len(letter.errors) - 1})" if len(letter.errors) > 1 else ""
    return f"{loc}: {err.get('msg', err.get('type', '?'))}{more}"


def _reason(letter: DeadLetter) -> str:
    return f"{letter.reason} (raw truncated)" if letter.truncated else letter.reason


def _letter_dict(topic: Topic, letter: DeadLetter, replayed_to: str | None) -> dict[str, Any]:
    return {
        "topic": topic.value,
        "id": letter.entry_id,
        "time_ms": letter.time_ms,
        "service": letter.service,
        "path": letter.path,
        "profile": letter.profile,
        "cause": letter.cause,
        "reason": letter.reason,
        "errors": letter.errors,
        "stream_id": letter.stream_id,
        "partition": letter.partition,
        "deliveries": letter.deliveries,
        "replayed_to": replayed_to,
        "raw": letter.raw.decode("utf-8", errors="replace"),
        "truncated": letter.truncated,
        "raw_size": letter.raw_size,
        "raw_sha256": letter.raw_sha256,
    } | _raw_bytes(letter.raw)


def _raw_bytes(raw: bytes) -> dict[str, str]:
    """``raw_base64`` when the payload is not UTF-8 (a bad exchange frame): ``raw`` shows such
    bytes as U+FFFD, which cannot give them back."""
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return {"raw_base64": base64.b64encode(raw).decode("ascii")}
    return {}


@app.command("list")
@with_redis_options
def list_letters(
    topic: TopicOption = None,
    count: Annotated[int, typer.Option("--count", min=1, help="Newest letters shown per topic.")] = 20,
    as_json: AsJson = False,
    redis: RedisOptions = DEFAULT_REDIS_OPTIONS,
) -> None:
    """The newest dead letters of each topic with their errors, and how many each topic holds."""
    client, keys = pipeline_redis(redis)
    out: dict[str, Any] = {}
    rows = []
    for t in [topic] if topic else list(Topic):
        marks = replay_marks(client, keys, t)
        entries: Any = client.xrevrange(keys.dlq(t), count=count)
        letters = [DeadLetter.from_entry(i, f) for i, f in entries]
        out[t.value] = {
            "total": int(client.xlen(keys.dlq(t))),
            "replayed_kept": len(marks),
            "letters": [_letter_dict(t, x, marks.get(x.entry_id)) for x in letters],
        }
        for x in letters:
            mark = marks.get(x.entry_id)
            path = x.path + (f"/{x.profile}" if x.profile else "")
            when = _when(x.time_ms)
            rows.append(
                [t.value, x.entry_id, when, x.service, path, x.cause, _reason(x), _first_error(x), mark or ""]
            )
    if as_json:
        print_json(out)
        return
    totals = ", ".join(f"{n}: {d['total']}" for n, d in out.items())
    columns = [
        "topic",
        "id",
        "parked (UTC)",
        "service",
        "path",
        "cause",
        "reason",
        "first error",
        "replayed to",
    ]
    console.print(table(f"Dead letters ({totals})", columns, [[escape(str(c)) for c in r] for r in rows]))


@app.command("show")
@with_redis_options
def show(
    entry_id: Annotated[str, typer.Argument(help="Dead-letter entry id (from cdb dlq list).")],
    topic: TopicOption = None,
    as_json: AsJson = False,
    redis: RedisOptions = DEFAULT_REDIS_OPTIONS,
) -> None:
    """One dead letter in full: metadata, every structured error, and the raw bytes. Without
    --topic, an id held by more than one topic is refused (exit 2) with the topics named."""
    if not is_entry_id(entry_id):
        exit_with(
            CdbError(f"{entry_id!r} is not a dead-letter id: use one from cdb dlq list, like 1767225600000-0")
        )
    client, keys = pipeline_redis(redis)
    # Ids are unique per topic's dead-letter stream only: without --topic, an id two topics
    # hold is refused rather than guessed.
    found = {
        t: x for t in ([topic] if topic else list(Topic)) if (x := find_letter(client, keys, t, entry_id))
    }
    if not found:
        exit_with(CdbError(f"no dead letter {entry_id} under key prefix {keys.prefix!r}"), code=1)
    if len(found) > 1:
        names = ", ".join(t.value for t in found)
        exit_with(CdbError(f"dead letter {entry_id} is in more than one topic ({names}): give --topic"))
    [(t, letter)] = found.items()
    data = _letter_dict(t, letter, replay_marks(client, keys, t).get(entry_id))
    if as_json:
        print_json(data)
        return
    for name in (
        "topic",
        "id",
        "service",
        "path",
        "profile",
        "cause",
        "reason",
        "stream_id",
        "partition",
        "deliveries",
    ):
        console.print(f"[bold]{name}[/]: {escape(str(data[name]))}", highlight=False)
    console.print(f"[bold]parked[/]: {_when(letter.time_ms)} UTC", highlight=False)
    console.print(f"[bold]replayed to[/]: {shown(data['replayed_to'] or '-')}", highlight=False)
    console.print("[bold]errors[/]:")
    console.print(escape(json.dumps(letter.errors, indent=2, ensure_ascii=False, default=str)))
    if letter.truncated:
        note = f"first {len(letter.raw):,} of {letter.raw_size:,} bytes kept, sha256 {letter.raw_sha256}"
        console.print(f"[bold]raw[/] [bold yellow](TRUNCATED: {note}; not replayable)[/]:", highlight=False)
    else:
        console.print("[bold]raw[/]:")
    console.print(escape(data["raw"]), highlight=False)


@app.command("replay")
@with_redis_options
def replay(
    topic: Annotated[Topic, typer.Option("--topic", help="The topic whose dead letters to replay.")],
    ids: Annotated[list[str] | None, typer.Argument(help="Dead-letter ids to replay.")] = None,
    replay_all: Annotated[bool, typer.Option("--all", help="Every dead letter of the topic.")] = False,
    path: Annotated[
        CodecPath, typer.Option("--path", help="Path of the consuming service now.")
    ] = CodecPath.PYDANTIC,
    profile: Annotated[
        Profile | None, typer.Option("--profile", help="Its profile now; default: the installed default.")
    ] = None,
    max_bytes: Annotated[
        int, typer.Option("--max-bytes", envvar="MAX_MESSAGE_BYTES", min=1, help="Its MAX_MESSAGE_BYTES now.")
    ] = 65_536,
    retired: Retired = "",
    delete_replayed: Annotated[
        bool, typer.Option("--delete-replayed", help="Delete replayed letters (default: mark them).")
    ] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Re-validate only; write nothing.")] = False,
    again: Annotated[bool, typer.Option("--again", help="Also replay letters marked as replayed.")] = False,
    only_newer: Annotated[
        bool,
        typer.Option(
            "--only-newer", help="Replay only letters the consumer would not ignore as stale/duplicate."
        ),
    ] = False,
    include_stale: Annotated[
        bool,
        typer.Option("--include-stale", help="Replay letters the consumer will ignore too (it counts them)."),
    ] = False,
    as_json: AsJson = False,
    redis: RedisOptions = DEFAULT_REDIS_OPTIONS,
) -> None:
    """Re-validate dead letters and publish the ones that now decode, in their original order
    (by original stream id; a letter that never was a stream entry by when it was parked);
    exit 1 if any stays, if another replay of the topic is in progress (nothing written), or
    if this one lost its lock to another partway (it says how many it published; no more).

    Before writing it says how many replayed messages the consuming service would ignore
    (stale trades, duplicate ids) and why; while any would, it writes nothing unless told
    --only-newer or --include-stale (or use ``cdb dlq catch-up`` to make them count).
    """
    if bool(ids) == replay_all:
        exit_with(CdbError("give dead-letter ids or --all (not both)"))
    if only_newer and include_stale:
        exit_with(CdbError("--only-newer and --include-stale exclude each other"))
    policy = (
        IgnoredPolicy.ONLY_NEWER
        if only_newer
        else IgnoredPolicy.INCLUDE
        if include_stale
        else IgnoredPolicy.REFUSE
    )
    client, keys = pipeline_redis(redis)
    profile = profile or default_profile()
    codec = consumer_codec(topic, path, profile, max_bytes, retired)
    try:
        report = replay_letters(
            client,
            keys,
            topic,
            codec,
            ids=None if replay_all else ids,
            delete_replayed=delete_replayed,
            dry_run=dry_run,
            again=again,
            policy=policy,
        )
    except ReplayInProgressError as exc:
        exit_with(exc, code=1)
    outcomes = report.outcomes
    stays = [o for o in outcomes if o.status in (ReplayStatus.STILL_INVALID, ReplayStatus.NOT_FOUND)]
    if as_json:
        print_json(
            {
                "refused": report.refused,
                "ignored": report.ignored,
                "behind_group": report.impact.behind_group if report.impact else 0,
                "outcomes": [o.to_dict() for o in outcomes],
            }
        )
    else:
        _print_replay(report, topic, path, profile, dry_run=dry_run, delete_replayed=delete_replayed)
    raise SystemExit(1 if stays or report.refused else 0)


def _print_replay(
    report: ReplayReport,
    topic: Topic,
    path: CodecPath,
    profile: Profile,
    *,
    dry_run: bool,
    delete_replayed: bool,
) -> None:
    rows = []
    for o in report.outcomes:
        detail = o.stream_id or ""
        if o.errors:
            err = o.errors[0]
            detail = f"{'.'.join(str(p) for p in err.get('loc', ())) or '<message>'}: {err.get('msg')}"
        elif o.ignored:
            detail += f" {o.ignored}"
        elif o.defaulted:
            detail += f" (filled: {', '.join(o.defaulted)})"
        kept = "deleted" if o.deleted else "kept, marked" if o.status is ReplayStatus.REPLAYED else "kept"
        rows.append([o.entry_id, o.status.value, kept, detail.strip()])
    where = f"{path.value}/{profile.value}" if path is CodecPath.PYDANTIC else path.value
    title = f"Replay of {topic.value} dead letters with {where}" + (" (dry run)" if dry_run else "")
    columns = ["dead letter", "outcome", "in the DLQ", "new stream id / why"]
    console.print(table(title, columns, [[escape(str(c)) for c in r] for r in rows]))
    impact = report.impact
    if impact is not None and impact.consumer is not None:
        n = len([o for o in report.outcomes if o.ignored is not None])
        console.print(
            f"{n} of the replayable letters would be ignored by {impact.consumer.value} "
            f"(stale or duplicate: see each row); {impact.behind_group} lie behind its group's position",
            highlight=False,
        )
    if report.refused:
        console.print(
            "[bold red]refused: nothing written.[/] Choose: cdb dlq catch-up (stop the consumer; it "
            "re-reads them in their original order), --only-newer (replay the others), or "
            "--include-stale (replay all; the ignored ones will not count)",
            highlight=False,
        )
    replayed = any(o.status is ReplayStatus.REPLAYED for o in report.outcomes)
    if not delete_replayed and not dry_run and replayed:
        console.print("replayed letters are kept and marked; --delete-replayed removes them")


app.command("catch-up")(catch_up_command)


@app.command("review")
@with_redis_options
def review(
    topic: TopicOption = None,
    through: Annotated[
        str | None,
        typer.Option(
            "--through",
            help="Last reviewed dead-letter id, like 1767225600000-0 (or epoch ms: that whole "
            "millisecond), no newer than the newest letter of each topic; default: the newest of each.",
        ),
    ] = None,
    as_json: AsJson = False,
    redis: RedisOptions = DEFAULT_REDIS_OPTIONS,
) -> None:
    """Record once that the dead letters up to now (or --through ID) were reviewed.

    ``cdb cutover check`` then counts only newer letters as unreviewed, without
    --dlq-reviewed-before on every run. Recorded in ``<topic>_dlq_replayed`` (field
    ``reviewed-through``), which the operator's ACL user may write. A review covers letters
    that exist: --through newer than a topic's newest letter is refused (exit 2, nothing
    recorded), since it would pass letters parked later unseen. A topic without letters
    records nothing and clears the review recorded before (there is nothing it could cover).
    """
    try:  # the review feeds the migration's cutover check; after week 4 there is none
        from migration.dlq_review import REVIEWED_FIELD, review_key
    except ModuleNotFoundError as exc:
        if exc.name not in ("migration", "migration.dlq_review"):
            raise
        exit_with(CdbError("the migration plug-in is not installed: there is no cutover review to record"))

    through_key = review_key(through) if through is not None else None
    if through is not None and through_key is None:
        exit_with(
            CdbError(
                f"--through {through!r} is not a dead-letter id: use one from cdb dlq list, "
                "like 1767225600000-0 (or epoch ms)"
            )
        )
    client, keys = pipeline_redis(redis)
    newest = _newest_letters(client, keys, [topic] if topic else list(Topic))
    if through is not None and through_key is not None:
        _refuse_beyond_newest(through, through_key, newest, every_topic=topic is None)
    recorded: dict[str, str | None] = {}
    cleared: dict[str, str] = {}
    for t, last in newest.items():
        point = through if last is not None and through is not None else last
        if point is not None:
            client.hset(keys.dlq_replayed(t), REVIEWED_FIELD, point)
        else:
            old = _clear_review(client, keys, t, REVIEWED_FIELD)
            if old:
                cleared[t.value] = old
        recorded[t.value] = point
    if as_json:
        print_json(recorded)
        return
    for name, point in recorded.items():
        if point:
            console.print(f"{name}_dlq: reviewed through {point}", highlight=False)
        else:
            was = f" (cleared the review recorded through {cleared[name]!r})" if name in cleared else ""
            console.print(f"{name}_dlq: empty, nothing to record{shown(was)}", highlight=False)


def _newest_letters(client: SyncClient, keys: KeySpace, topics: list[Topic]) -> dict[Topic, str | None]:
    newest: dict[Topic, str | None] = {}
    for t in topics:
        entries: Any = client.xrevrange(keys.dlq(t), count=1)
        newest[t] = entries[0][0].decode() if entries else None
    return newest


def _refuse_beyond_newest(
    through: str, through_key: tuple[int, int], newest: dict[Topic, str | None], *, every_topic: bool
) -> None:
    # A point past the newest letter would count letters parked after the review as reviewed.
    beyond = [(t, last) for t, last in newest.items() if last is not None and through_key > entry_key(last)]
    if not beyond:
        return
    which = ", ".join(f"{t.value} ({last})" for t, last in beyond)
    whole_ms = "" if "-" in through else " (epoch ms covers that whole millisecond)"
    per_topic = ", one topic at a time with --topic" if every_topic else ""
    exit_with(
        CdbError(
            f"--through {through}{whole_ms} is newer than the newest dead letter of {which}: a review "
            f"covers only letters that exist; give an id up to the newest (cdb dlq list){per_topic}; "
            "nothing recorded"
        )
    )


def _clear_review(client: SyncClient, keys: KeySpace, topic: Topic, field: str) -> str | None:
    """Clear the review recorded for ``topic`` (which has no letter to cover); the value it had."""
    # A review kept here (not an id, or a future one) could only pass letters parked later.
    # "" clears it: the operator's ACL user may HSET the field, not HDEL it.
    recorded: Any = client.hgetall(keys.dlq_replayed(topic))  # HGETALL: what the operator ACL allows
    old = next((reply_text(v) for k, v in recorded.items() if reply_text(k) == field), None)
    if old:
        client.hset(keys.dlq_replayed(topic), field, "")
    return old or None
