"""``cdb cutover check / apply / rollback``: the release manager's switch to the strict profile.

``check`` prints the GO/NO-GO with its evidence (exit 0 only on GO). ``apply``
writes the strict flags into the env files after a GO (or ``--force --reason``),
keeping a backup, and prints the per-container recreate commands in a safe order.
``rollback`` restores the files of the last apply byte for byte. Both take
``--plan`` to show the unified diff without writing.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Any

import redis
import typer
from rich.markup import escape

from cdb.cli.cutover_progress import window_progress
from cdb.cli.env_changes import (
    Backup,
    EnvDir,
    ForceRollback,
    Plan,
    print_changes,
    print_recreate,
    print_written,
    roll_back,
)
from cdb.cli.options import (
    DEFAULT_REDIS_OPTIONS,
    AsJson,
    RedisOptions,
    open_async_target,
    unreachable,
    with_redis_options,
)
from cdb.cli.output import console, err_console, exit_with, print_json, shown
from core.errors import CdbError, ConfigError
from core.redis.modes import RedisTarget
from core.topics import KeySpace
from migration.cutover import CheckOptions, CutoverReport, Verdict, check_cutover
from migration.cutover_files import (
    CUTOVER,
    RECREATE_ORDER,
    CutoverFileError,
    apply_changes,
    plan_cutover,
)
from migration.dlq_review import checked_point

__all__ = ["app"]

app = typer.Typer(help="GO/NO-GO for the strict profile, then apply or roll it back.", no_args_is_help=True)

Window = Annotated[
    float,
    typer.Option(
        "--window",
        min=0,
        help="Seconds between two live-state snapshots compared for defaults filled and shadow "
        "mismatches; 0: the counters since each instance started.",
    ),
]
Scan = Annotated[int, typer.Option("--scan", min=0, help="Newest entries of each <topic>_stream to scan.")]
SinceAll = Annotated[
    bool,
    typer.Option(
        "--since-all",
        help="Scan the newest --scan entries regardless of consumer groups and producer start times.",
    ),
]
AllowDlq = Annotated[bool, typer.Option("--allow-dlq", help="Unreviewed dead letters warn instead of NO-GO.")]


def _review_point(value: str | None) -> str | None:
    """``--dlq-reviewed-before`` if it is an entry id or epoch ms (empty: none); anything else is
    a usage error (exit 2) before Redis is asked, not a failure in the middle of the check."""
    if value:
        try:
            checked_point(value)
        except ConfigError as exc:
            exit_with(exc)
    return value


ReviewedBefore = Annotated[
    str | None,
    typer.Option(
        "--dlq-reviewed-before",
        help="Dead letters at or before this entry id (or epoch ms) count as reviewed.",
        callback=_review_point,
    ),
]


_ORDER_WHY = (
    "Order: from the end of the pipeline backwards. At GO every producer already sends api_version "
    "and timestamp, so no order loses data; end-first keeps a surprise small (execution's mistakes "
    "touch only order results) and lets each step be checked before the one upstream. ws decodes "
    "nothing from Redis, so strict changes nothing it accepts: it goes last."
)


def _check(
    target: RedisTarget, prefix: str, options: CheckOptions, *, progress: bool = False
) -> CutoverReport:
    async def run() -> CutoverReport:
        client = await open_async_target(target)
        try:
            if progress and options.window_s > 0:
                # A window of minutes must not look like a hang: show time left and what is seen.
                sleep = window_progress(client, KeySpace(prefix), err_console)
                return await check_cutover(client, KeySpace(prefix), options, sleep=sleep)
            return await check_cutover(client, KeySpace(prefix), options)
        except (redis.RedisError, OSError) as exc:
            raise unreachable(target.url, exc) from exc
        finally:
            await client.aclose()

    return asyncio.run(run())


def _print_report(report: CutoverReport) -> None:
    for finding in report.findings:
        mark = "[green]✔[/]" if finding.ok else "[bold red]✘[/]"
        console.print(f"{mark} [bold]{finding.name}[/]: {escape(finding.summary)}")
        for line in finding.details:
            console.print(f"    {escape(line)}", highlight=False)
    colour = "green" if report.verdict is Verdict.GO else "red"
    prefix = shown(repr(report.prefix))
    console.print(f"\n[bold {colour}]{report.verdict.value}[/] for the strict profile (key prefix {prefix})")


_ROLLBACK_WHY = (
    "Order: the same, from the end backwards; lenient accepts everything strict did, so no order "
    "loses data. Dead letters parked while strict ran stay parked: once a service runs lenient "
    "again, cdb dlq catch-up --topic <its input> makes them count (docs/migration-runbook.md)."
)


def _print_recreate(verb: str, *, rollback: bool = False) -> None:
    # After a rollback the dead-letter streams may well hold what strict refused: not "empty".
    then = "cdb status  (path/profile of the new instance)" + (
        "" if rollback else ", cdb dlq list  (stays empty)"
    )
    print_recreate(RECREATE_ORDER, verb, then=then, why=_ROLLBACK_WHY if rollback else _ORDER_WHY)


@app.command("check")
@with_redis_options
def check(
    window: Window = 0.0,
    scan: Scan = 1000,
    since_all: SinceAll = False,
    allow_dlq: AllowDlq = False,
    dlq_reviewed_before: ReviewedBefore = None,
    as_json: AsJson = False,
    redis: RedisOptions = DEFAULT_REDIS_OPTIONS,
) -> None:
    """GO/NO-GO for CONTRACT_PROFILE=strict, with the evidence; exit 0 only on GO."""
    options = CheckOptions(window, scan, since_all, allow_dlq, dlq_reviewed_before)
    try:
        report = _check(redis.target(), redis.prefix, options, progress=not as_json)
    except CdbError as exc:
        exit_with(exc)
    if as_json:
        print_json(report.to_dict())
    else:
        _print_report(report)
    raise SystemExit(0 if report.verdict is Verdict.GO else 1)


@app.command("apply")
@with_redis_options
def apply(
    env_dir: EnvDir = Path("env"),
    plan: Plan = False,
    force: Annotated[bool, typer.Option("--force", help="Apply without a GO (needs --reason).")] = False,
    reason: Annotated[
        str | None, typer.Option("--reason", help="Why you force it; recorded in the cutover log.")
    ] = None,
    window: Window = 0.0,
    scan: Scan = 1000,
    since_all: SinceAll = False,
    allow_dlq: AllowDlq = False,
    dlq_reviewed_before: ReviewedBefore = None,
    redis: RedisOptions = DEFAULT_REDIS_OPTIONS,
) -> None:
    """Write USE_PYDANTIC_CONTRACTS=true and CONTRACT_PROFILE=strict into every env file after a GO."""
    if force and not (reason and reason.strip()):
        exit_with(CutoverFileError('--force needs --reason "...": the reason is recorded in the cutover log'))
    try:
        changes = plan_cutover(env_dir)
    except CdbError as exc:
        exit_with(exc)
    options = CheckOptions(window, scan, since_all, allow_dlq, dlq_reviewed_before)
    report: CutoverReport | None = None
    try:
        report = _check(redis.target(), redis.prefix, options)
    except CdbError as exc:
        if not (force or plan):
            exit_with(exc)
        console.print(f"[yellow]check not possible:[/] {escape(str(exc))}")
    if report is not None:
        _print_report(report)
    go = report is not None and report.verdict is Verdict.GO
    if plan:
        console.print("\n[bold]plan[/] (nothing written):")
        print_changes(changes, "strict")
        return
    if not go and not force:
        console.print('[bold red]refused:[/] no GO. Fix the findings above, or --force --reason "..."')
        raise SystemExit(1)
    if not any(c.changed for c in changes):
        console.print("every env file already says pydantic/strict: nothing to write")
        return
    print_changes(changes, "strict")
    evidence: Any = report.to_dict() if report is not None else None
    verdict = report.verdict.value if report is not None else "unknown"
    backup, line = apply_changes(
        env_dir, changes, verdict=verdict, forced=force and not go, reason=reason, evidence=evidence
    )
    print_written(backup, line, forced=force and not go, reason=reason)
    _print_recreate("switch it to strict")
    console.print(f"Undo: cdb cutover rollback --env-dir {shown(env_dir)}")


@app.command("rollback")
def rollback_cmd(
    env_dir: EnvDir = Path("env"),
    backup: Backup = None,
    plan: Plan = False,
    force: ForceRollback = False,
) -> None:
    """Restore the env files of the last apply byte for byte (the replaced ones are kept)."""
    if roll_back(env_dir, backup, CUTOVER, plan=plan, force=force) is not None:
        _print_recreate("switch it back", rollback=True)
