"""``cdb versions``: the declared contract versions, and retiring one on evidence.

``retire-check`` prints the GO/NO-GO (exit 0 only on GO). ``retire-apply`` runs the same check and,
on a GO (or ``--force --reason``), writes ``RETIRED_VERSIONS_<TOPIC>`` (and, where a producer still
writes the version, ``PRODUCE_VERSION_<TOPIC>``) into the env files with a backup;
``retire-rollback`` restores them byte for byte (:mod:`core.versions.retire_env`,
:mod:`core.env_files`). Both take ``--plan`` to show the diff without writing.
"""

from __future__ import annotations

import asyncio
import math
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

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
from cdb.cli.options import DEFAULT_REDIS_OPTIONS, AsJson, RedisOptions, with_redis_options
from cdb.cli.output import console, exit_with, print_json, shown
from cdb.cli.status import load_pipeline
from core.errors import CdbError, ConfigError
from core.topics import ServiceName, Topic
from core.utils.clock import now_ms

if TYPE_CHECKING:
    from core.versions.retire import RetireReport

app = typer.Typer(
    help="Contract versions: what is declared, and retiring one on evidence.", no_args_is_help=True
)


@app.command("list")
def list_versions(as_json: AsJson = False) -> None:
    """Every topic's declared versions and the changes between them (core/versions/declaration.py)."""
    from core.versions.declaration import VERSIONS

    data: dict[str, dict[str, Any]] = {
        topic.value: {
            "versions": declared.versions,
            "steps": [
                {
                    "from": s.older,
                    "to": s.newer,
                    "breaking": s.breaking,
                    "changes": [c.describe() for c in s.changes],
                }
                for s in declared.steps
            ],
        }
        for topic, declared in VERSIONS.items()
    }
    if as_json:
        print_json(data)
        return
    for topic, entry in data.items():
        console.print(f"[bold]{topic}[/]: {', '.join(entry['versions'])}")
        for step in entry["steps"]:
            kind = "breaking" if step["breaking"] else "additive"
            console.print(
                f"  {step['from']} -> {step['to']} ({kind}): {'; '.join(step['changes'])}", markup=False
            )


RetiredTopic = Annotated[str, typer.Option("--topic", help="The topic whose version to retire.")]
RetiredVersion = Annotated[str, typer.Option("--version", help="The version to retire, e.g. v1.0.")]
Window = Annotated[float, typer.Option("--window", min=0, help="Seconds without that version.")]


@app.command("retire-check")
@with_redis_options
def retire_check_command(
    topic: RetiredTopic,
    version: RetiredVersion,
    window: Window = 600.0,
    as_json: AsJson = False,
    redis: RedisOptions = DEFAULT_REDIS_OPTIONS,
) -> None:
    """GO/NO-GO to stop writing and reading VERSION on TOPIC; exit 0 only on GO."""
    try:
        chosen = _topic_version(topic, version)
        _check_window(window)
        report = _retire_report(redis, chosen, version, window)
    except CdbError as exc:
        exit_with(exc)
    if as_json:
        print_json(report.to_dict())
    else:
        _print_report(report)
    raise SystemExit(0 if report.go else 1)


def _topic_version(topic: str, version: str) -> Topic:
    from core.versions.declaration import known_versions

    if topic not in {t.value for t in Topic}:
        raise ConfigError("--topic", topic, [t.value for t in Topic])
    chosen = Topic(topic)
    if version not in known_versions(chosen):
        raise ConfigError("--version", version, known_versions(chosen))
    return chosen


def _check_window(window: float) -> None:
    # typer's min=0 lets "inf" through, which no clock can span (and NaN fails every comparison).
    if not math.isfinite(window):
        raise ConfigError("--window", window, ["a finite number of seconds >= 0"])


def _retire_report(redis: RedisOptions, topic: Topic, version: str, window: float) -> RetireReport:
    from core.versions.retire import retire_check

    states, _ = asyncio.run(load_pipeline(redis.target(), redis.prefix))
    return retire_check(states, topic, version, window, now_ms())


def _print_report(report: RetireReport) -> None:
    colour = "green" if report.go else "red"
    verdict = "GO" if report.go else "NO-GO"
    console.print(f"[bold {colour}]{verdict}[/] to retire {report.version} of {report.topic.value}")
    for reason in report.reasons:
        console.print(f"  - {reason}", markup=False)
    for line in report.evidence:
        console.print(f"  {line}", markup=False)


_ORDER_WHY = (
    "Order: retiring, the producer first (it stops writing the version), then the consumers "
    "(they stop reading it); rolling back, the consumers first. So no message is refused on the way."
)


def _print_recreate(services: list[ServiceName], verb: str) -> None:
    then = "cdb status --json  (reads/writes of the new instance), cdb dlq list"
    print_recreate(services, verb, then=then, why=_ORDER_WHY)


@app.command("retire-apply")
@with_redis_options
def retire_apply(
    topic: RetiredTopic,
    version: RetiredVersion,
    window: Window = 600.0,
    env_dir: EnvDir = Path("env"),
    produce: Annotated[
        str | None,
        typer.Option(
            "--produce",
            help="What a producer still writing the version writes instead "
            "(default: the newest version every running consumer reads).",
        ),
    ] = None,
    plan: Plan = False,
    force: Annotated[bool, typer.Option("--force", help="Apply without a GO (needs --reason).")] = False,
    reason: Annotated[
        str | None, typer.Option("--reason", help="Why you force it; recorded in the retirement log.")
    ] = None,
    redis: RedisOptions = DEFAULT_REDIS_OPTIONS,
) -> None:
    """After a GO of retire-check, write RETIRED_VERSIONS_<TOPIC> into the env files of the topic's
    producer and consumers (and move a producer off the version), keeping a backup."""
    from core.env_files import EnvFileError, apply_changes
    from core.versions.declaration import known_versions
    from core.versions.retire_env import RETIREMENT, plan_retirement, retire_services, retire_target

    try:
        chosen = _topic_version(topic, version)
        _check_window(window)
        if force and not (reason and reason.strip()):
            raise EnvFileError('--force needs --reason "...": the reason is recorded in the retirement log')
        if produce is not None and (produce not in known_versions(chosen) or produce == version):
            others = [v for v in known_versions(chosen) if v != version]
            raise ConfigError(
                "--produce", produce, others, f"a declared version of {topic} other than {version}"
            )
    except CdbError as exc:
        exit_with(exc)
    report: RetireReport | None = None
    try:
        report = _retire_report(redis, chosen, version, window)
    except CdbError as exc:
        if not (force or plan):
            exit_with(exc)
        console.print(f"[yellow]check not possible:[/] {escape(str(exc))}")
    if report is not None:
        _print_report(report)
    go = report is not None and report.go
    try:
        consumers = report.consumers if report is not None else []
        target = produce or retire_target(chosen, version, consumers)
        changes = plan_retirement(env_dir, chosen, version, target)
    except CdbError as exc:
        exit_with(exc)
    label = f"{version} retired"
    if plan:
        console.print("\n[bold]plan[/] (nothing written):")
        print_changes(changes, label)
        return
    if not go and not force:
        console.print('[bold red]refused:[/] no GO. Fix the reasons above, or --force --reason "..."')
        raise SystemExit(1)
    if not any(c.changed for c in changes):
        console.print(f"every env file already retires {version} of {topic}: nothing to write")
        return
    print_changes(changes, label)
    verdict = ("GO" if go else "NO-GO") if report is not None else "unknown"
    forced = force and not go
    record = {
        "topic": topic,
        "version": version,
        "produce": target,
        "verdict": verdict,
        "forced": forced,
        "reason": reason,
        "evidence": report.to_dict() if report is not None else None,
    }
    why = f' forced reason="{reason}"' if forced else ""
    backup, line = apply_changes(
        env_dir,
        changes,
        RETIREMENT,
        record=record,
        summary=f"retire {topic} {version} verdict={verdict}{why}",
    )
    print_written(backup, line, forced=forced, reason=reason)
    _print_recreate(
        [c.service for c in changes if c.changed] or retire_services(chosen), f"stop using {version}"
    )
    console.print(f"Undo: cdb versions retire-rollback --env-dir {shown(env_dir)}")


@app.command("retire-rollback")
def retire_rollback(
    env_dir: EnvDir = Path("env"),
    backup: Backup = None,
    plan: Plan = False,
    force: ForceRollback = False,
) -> None:
    """Restore the env files of the last retire-apply byte for byte (the replaced ones are kept)."""
    from core.env_files import read_manifest
    from core.versions.retire_env import RETIREMENT, retire_services

    done = roll_back(env_dir, backup, RETIREMENT, plan=plan, force=force)
    if done is not None:
        source, changes = done
        what = read_manifest(source)
        changed = {c.service for c in changes if c.changed}
        order = [s for s in reversed(retire_services(Topic(what["topic"]))) if s in changed]
        _print_recreate(order, f"read {what['version']} again")
