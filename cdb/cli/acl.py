"""``cdb acl``: the least-privilege Redis ACL file of the pipeline (template or rendered), and
``cdb acl audit``: what the ACL cannot prevent (a producer trimming unread entries), made visible."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

import typer
from redis import Redis, RedisError
from redis.cluster import RedisCluster

from cdb.cli.options import (
    DEFAULT_REDIS_OPTIONS,
    DEFAULT_REDIS_URL,
    AsJson,
    RedisOptions,
    cli_target,
    open_sync_target,
    unreachable,
    with_redis_options,
)
from cdb.cli.output import console, err_console, exit_with, print_json, shown, table
from core.errors import CdbError, ConfigError
from core.redis.acl import (
    DEFAULT_REDIS_VERSION,
    DEFAULT_USER_PREFIX,
    ROLES,
    acl_file,
    apply_acl,
    disable_default_user,
    passwords_from_env,
)
from core.redis.acl_audit import default_user_answers, trimmed_before_delivery
from core.redis.topology import read_partitions_sync
from core.settings import ServiceSettings
from core.topics import KeySpace

app = typer.Typer(
    help="Least-privilege Redis ACL users (one per service, plus operator).", no_args_is_help=True
)


# The options `export` and `apply` share: which key space the users' rules cover.
KeyPrefixOption = Annotated[
    str | None, typer.Option("--key-prefix", help="Key prefix (default: the KEY_PREFIX setting).")
]
UserPrefixOption = Annotated[str, typer.Option("--user-prefix", help="Prefix of the ACL user names.")]
PartitionsOption = Annotated[
    int | None,
    typer.Option("--partitions", min=1, help="Partitions per topic (default: TOPIC_PARTITIONS)."),
]


def _acl_keys(key_prefix: str | None, partitions: int | None) -> KeySpace:
    """The key space the ACL rules cover: the options over the KEY_PREFIX / TOPIC_PARTITIONS settings."""
    settings = ServiceSettings.load()
    prefix = key_prefix if key_prefix is not None else settings.key_prefix
    return KeySpace(prefix, partitions or settings.topic_partitions)


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
    key_prefix: KeyPrefixOption = None,
    user_prefix: UserPrefixOption = DEFAULT_USER_PREFIX,
    redis_version: Annotated[
        str, typer.Option("--redis-version", help="Server version the rules target (7.0 or newer).")
    ] = ".".join(map(str, DEFAULT_REDIS_VERSION)),
    partitions: PartitionsOption = None,
) -> None:
    """Write the Redis aclfile: a template (users off, no passwords) or, with --render, the deployable one."""
    try:
        keys = _acl_keys(key_prefix, partitions)
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


@app.command("audit")
@with_redis_options
def audit(as_json: AsJson = False, redis: RedisOptions = DEFAULT_REDIS_OPTIONS) -> None:
    """Entries trimmed from a topic stream before a consumer group read them, and whether the
    default user is on (it accepts connections without a login); exit 1 if either.

    ACLs cannot stop a stream's producer from trimming it (docs/security.md, "Limits"),
    and a STREAM_MAXLEN below a consumer's backlog does the same: either way it shows here.
    Needs read rights only (cdb-operator).
    """
    try:
        target = redis.target()
        client = open_sync_target(target)
        keys = redis.keys()
        keys = keys.with_partitions(read_partitions_sync(client, keys) or 1)
        losses = trimmed_before_delivery(client, keys)
        sentinel = bool(target.sentinels) or redis.settings().redis_mode == "sentinel"
        default_on = _default_user_on(target.url, sentinel=sentinel)
    except (RedisError, OSError) as exc:
        exit_with(unreachable(target.url, exc))
    except CdbError as exc:
        exit_with(exc)
    if as_json:
        print_json({"default_user_on": default_on, "trimmed_before_delivery": [_row(x) for x in losses]})
        raise typer.Exit(1 if losses or default_on else 0)
    if default_on:
        console.print("[bold red]the default user is on:[/] connections without a login are accepted")
    elif default_on is False:
        console.print("default user: off (a connection must log in)")
    if losses:
        rows = [[x.topic, x.stream, x.group, x.lost, x.last_delivered_id] for x in losses]
        console.print(
            table(
                "Entries trimmed before their consumers read them",
                ["topic", "stream", "group", "lost", "group last read"],
                rows,
            )
        )
    else:
        console.print("no topic stream lost unread entries to trimming")
    if losses or default_on:
        raise typer.Exit(1)


def _default_user_on(url: str, *, sentinel: bool) -> bool | None:
    """Whether the server at ``url`` answers without a login; None when not checked
    (a Sentinel address, a unix socket or TLS: a plain TCP PING would not tell)."""
    parts = urlsplit(url or DEFAULT_REDIS_URL)
    if sentinel or parts.scheme != "redis" or not parts.hostname:
        return None
    return default_user_answers(parts.hostname, parts.port or 6379)


def _row(loss: object) -> dict[str, object]:
    return {name: getattr(loss, name) for name in ("topic", "stream", "group", "lost", "last_delivered_id")}


def _every_node(client: object) -> list[Redis]:
    """The one server, or every node of a cluster, replicas included (CLUSTER NODES), each
    logged in as ``client`` is."""
    if not isinstance(client, RedisCluster):
        return [client]  # type: ignore[list-item]
    first: Redis = client.get_default_node().redis_connection  # type: ignore[no-untyped-call]
    given = first.connection_pool.connection_kwargs
    kwargs: dict[str, Any] = {
        k: given.get(k) for k in ("username", "password", "socket_timeout", "socket_connect_timeout")
    }
    raw = first.execute_command("CLUSTER", "NODES")  # type: ignore[no-untyped-call]
    text = raw.decode() if isinstance(raw, bytes) else str(raw)
    nodes = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 3 or "fail" in fields[2].split(","):
            continue
        host, _, port = fields[1].split("@")[0].rpartition(":")
        nodes.append(Redis(**{**kwargs, "host": host or "127.0.0.1", "port": int(port)}))
    return nodes


@app.command("apply")
def apply(
    redis_url: Annotated[
        str, typer.Option("--redis-url", envvar="REDIS_URL", help="An ACL admin's URL (not a cdb-* user).")
    ] = DEFAULT_REDIS_URL,
    key_prefix: KeyPrefixOption = None,
    user_prefix: UserPrefixOption = DEFAULT_USER_PREFIX,
    partitions: PartitionsOption = None,
    disable_default: Annotated[
        bool, typer.Option("--disable-default", help="Also turn the default user off (as the ACL file does).")
    ] = False,
) -> None:
    """Create or replace the cdb-* users on a running server (no restart), passwords from
    CDB_ACL_<ROLE>_PASSWORD[_FILE]; e.g. to rotate a password. A server started with the
    ACL file is changed by re-rendering the file and restarting it instead."""
    try:
        keys = _acl_keys(key_prefix, partitions)
        passwords = passwords_from_env(os.environ)
        client = open_sync_target(cli_target(redis_url))
        # ACL users are per server: on a cluster, every node (replicas too, so a promoted
        # replica lets the services in); elsewhere the one server.
        nodes = _every_node(client)
        try:
            for node in nodes:
                users = apply_acl(node, keys, passwords, user_prefix=user_prefix)
                if disable_default:
                    disable_default_user(node)
        finally:
            for node in nodes:
                if node is not client:  # the per-node clients opened for a cluster
                    node.close()
    except RedisError as exc:
        exit_with(unreachable(redis_url, exc))
    except CdbError as exc:
        exit_with(exc)
    off = "; default user off" if disable_default else ""
    where = f" on {len(nodes)} nodes" if len(nodes) > 1 else ""
    err_console.print(f"applied {len(users)} users ({', '.join(users)}){where}{off}")
