"""``cdb acl``: the least-privilege Redis ACL file of the pipeline (template or rendered)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from core.cli.output import console, err_console, exit_with, shown
from core.errors import ConfigError
from core.redis.acl import DEFAULT_REDIS_VERSION, DEFAULT_USER_PREFIX, ROLES, acl_file, passwords_from_env
from core.settings import ServiceSettings
from core.topics import KeySpace

app = typer.Typer(
    help="Least-privilege Redis ACL users (one per service, plus operator).", no_args_is_help=True
)


def default_acl_path() -> Path:
    """``deploy/redis/users.acl`` of the source checkout this package runs from."""
    return Path(__file__).resolve().parents[2] / "deploy" / "redis" / "users.acl"


def _version(text: str) -> tuple[int, int]:
    try:
        major, minor = (int(p) for p in text.split(".")[:2])
    except ValueError:
        raise ConfigError("--redis-version", text, ["MAJOR.MINOR, e.g. 7.2"]) from None
    return major, minor


@app.command("export")
def export(
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Where to write ('-' = stdout; default: deploy/redis/users.acl)."),
    ] = None,
    render: Annotated[
        bool,
        typer.Option(
            "--render",
            help="Enable the users with passwords from CDB_ACL_<ROLE>_PASSWORD[_FILE] (stored as SHA-256).",
        ),
    ] = False,
    check_only: Annotated[
        bool, typer.Option("--check", help="Write nothing; exit 1 if the file differs from a fresh export.")
    ] = False,
    key_prefix: Annotated[
        str | None, typer.Option("--key-prefix", help="Key prefix (default: the KEY_PREFIX setting).")
    ] = None,
    user_prefix: Annotated[str, typer.Option("--user-prefix", help="Prefix of the ACL user names.")] = (
        DEFAULT_USER_PREFIX
    ),
    redis_version: Annotated[
        str, typer.Option("--redis-version", help="Server version the rules target (7.0 or newer).")
    ] = ".".join(map(str, DEFAULT_REDIS_VERSION)),
    partitions: Annotated[
        int | None,
        typer.Option("--partitions", min=1, help="Partitions per topic (default: TOPIC_PARTITIONS)."),
    ] = None,
) -> None:
    """Write the Redis aclfile: a template (users off, no passwords) or, with --render, the deployable one."""
    try:
        settings = ServiceSettings.load()
        prefix = key_prefix if key_prefix is not None else settings.key_prefix
        keys = KeySpace(prefix, partitions or settings.topic_partitions)
        passwords = passwords_from_env(os.environ) if render else None
        text = acl_file(keys, passwords, user_prefix=user_prefix, redis_version=_version(redis_version))
    except ConfigError as exc:
        exit_with(exc)
    target = out or default_acl_path()
    if check_only:
        current = target.read_text(encoding="utf-8") if target.is_file() else None
        if current != text:
            err_console.print(f"[bold red]{shown(target)} is out of date:[/] run `cdb acl export`")
            raise typer.Exit(1)
        console.print(f"{shown(target)}: up to date")
        return
    if str(target) == "-":
        typer.echo(text, nl=False)
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")
    if render:
        target.chmod(0o600)  # password hashes allow offline guessing: owner only
    kind = "rendered, passwords as SHA-256" if render else "template, every user off"
    err_console.print(f"wrote {shown(target)} ({len(ROLES)} users, {kind})")
