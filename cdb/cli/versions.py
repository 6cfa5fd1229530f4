"""``cdb versions``: the declared contract versions, and whether one can be retired."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import typer

from cdb.cli.options import DEFAULT_REDIS_OPTIONS, AsJson, RedisOptions, with_redis_options
from cdb.cli.output import console, exit_with, print_json
from cdb.cli.status import load_pipeline
from core.errors import CdbError, ConfigError
from core.topics import Topic
from core.utils.clock import now_ms

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


@app.command("retire-check")
@with_redis_options
def retire_check_command(
    topic: Annotated[str, typer.Option("--topic", help="The topic whose version to retire.")],
    version: Annotated[str, typer.Option("--version", help="The version to retire, e.g. v1.0.")],
    window: Annotated[float, typer.Option("--window", min=0, help="Seconds without that version.")] = 600.0,
    as_json: AsJson = False,
    redis: RedisOptions = DEFAULT_REDIS_OPTIONS,
) -> None:
    """GO/NO-GO to stop writing and reading VERSION on TOPIC; exit 0 only on GO."""
    from core.versions.declaration import known_versions
    from core.versions.retire import retire_check

    try:
        if topic not in {t.value for t in Topic}:
            raise ConfigError("--topic", topic, [t.value for t in Topic])
        chosen = Topic(topic)
        if version not in known_versions(chosen):
            raise ConfigError("--version", version, known_versions(chosen))
        states, _ = asyncio.run(load_pipeline(redis.target(), redis.prefix))
    except CdbError as exc:
        exit_with(exc)
    report = retire_check(states, chosen, version, window, now_ms())
    if as_json:
        print_json(report.to_dict())
    else:
        colour = "green" if report.go else "red"
        console.print(f"[bold {colour}]{'GO' if report.go else 'NO-GO'}[/] to retire {version} of {topic}")
        for reason in report.reasons:
            console.print(f"  - {reason}", markup=False)
        for line in report.evidence:
            console.print(f"  {line}", markup=False)
    raise SystemExit(0 if report.go else 1)
