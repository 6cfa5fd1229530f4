"""Least-privilege Redis ACL users, derived from :class:`KeySpace` and :class:`ServiceName`.

One user per service and one ``operator``; every rule is built here from the key
names :class:`~core.topics.KeySpace` makes and the topics each service consumes,
produces and dead-letters, so a key prefix or a renamed topic changes the ACL
with no edit. Each capability is an ACL *selector* (Redis >= 7.0) that pairs
commands with the keys they may touch, e.g. signal may ``XADD`` to
``signals_stream`` and ``market_data_dlq`` but only run group commands on
``market_data_stream`` -- with flat rules, ``+xadd`` plus read access to its input
stream would also let it append to ``market_data_stream``.

What each user may do (and nothing else):

- a service: PING; SET/GET/EXPIRE/DEL its own live-status keys; PUBLISH + XADD
  (``MAXLEN ~``) its output topic; XGROUP CREATE/XREADGROUP/XACK/XAUTOCLAIM/
  XPENDING/XINFO/XLEN/XRANGE and XGROUP DELCONSUMER (dead consumers) on its input
  stream; XADD to the dead-letter stream it
  writes (ws: ``market_data_dlq`` for bad exchange frames); SCAN and GET the live-status keys of
  its output's consumers and of its input's producers (the contract-version gates,
  core.versions.live); XRANGE its input's dead letters and HGETALL their replay marks (a state
  rebuild leaves out what was parked); GET the pipeline's
  partition count (``KeySpace.topology()``) and create it if absent (``SETNX``, which
  can never overwrite; no SET, no DEL); ws also HGET/HSET its resume
  positions (``KeySpace.source_positions()``); a consuming service also
  runs the lease and membership scripts (EVAL: GET/SET/PEXPIRE/DEL on its own
  partition leases, TIME/ZADD/ZREM/ZREMRANGEBYSCORE/ZRANGE on its own members set) and the
  script that writes a batch's outputs under its lease (EVAL on its leases and output streams);
  execution also runs its publish-once script (EVAL on its output stream and its
  ``{<stream>}:published:*`` markers, with its leases when fenced; GET/SET on those markers).
  With ``TOPIC_PARTITIONS`` > 1 every partition stream is named exactly.
- ``operator`` (``cdb status``, ``cdb dlq list/show``, ``cdb cutover``, ``cdb topology``):
  read every key of the key space (SCAN, GET, HGETALL, XRANGE, XINFO, ...), SUBSCRIBE to the
  topic channels, and administer the partition count (SET/DEL ``KeySpace.topology()``).
  It cannot write a pipeline stream or channel, so it cannot forge a message.
- ``replay`` (``cdb dlq replay`` only; a break-glass credential kept apart from the
  operator's): read like the operator, PUBLISH + XADD the fixed message to its topic,
  XDEL the letter or mark it in the ``dlq_replayed`` hash (HSET/HGETALL/HDEL), and hold
  the topic's replay lock (``KeySpace.dlq_replay_lock``: SET NX PX, renewed and released by
  script) while it writes.
  Injecting messages is its job, so it is the one role besides a topic's producer
  that can write that topic.
- ``default`` (every connection before AUTH): off. A connection must log in first.

What ACLs cannot hold (docs/security.md, "Limits"): a user allowed to XADD a stream
may also trim it (``XADD ... MAXLEN 0``): ACL rules cannot restrict arguments, and
Redis runs scripts and Functions with the caller's permissions, so a server-side
function cannot hold a right its caller lacks. Each topic's stream is therefore
writable (and trimmable) by its producer and by ``replay`` only; :mod:`core.redis.acl_audit`
makes entries trimmed before their consumers read them visible.

Passwords never appear in the rules: :func:`acl_file` and :func:`apply_acl` add
only their SHA-256 (``#<hex>``), and a user without a password cannot log in.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from core.errors import ConfigError
from core.topics import KeySpace, ServiceName, Topic

__all__ = [
    "DEFAULT_REDIS_VERSION",
    "DEFAULT_USER_PREFIX",
    "DEFAULT_USER_RULES",
    "MIN_PASSWORD_LENGTH",
    "MIN_REDIS_VERSION",
    "OPERATOR",
    "PASSWORD_VARIABLE",
    "REPLAY",
    "ROLES",
    "acl_file",
    "acl_rules",
    "acl_user",
    "apply_acl",
    "delete_acl_users",
    "disable_default_user",
    "password_hash",
    "passwords_from_env",
    "server_version",
]

OPERATOR = "operator"
"""The role of the people's tools (``cdb status``, ``cdb dlq``, ``cdb cutover``, ``cdb topology``)."""
REPLAY = "replay"
"""The role of ``cdb dlq replay``: the only non-service role that may write the pipeline's topics."""

ROLES: tuple[str, ...] = (*(s.value for s in ServiceName), OPERATOR, REPLAY)
"""Every ACL role: the services in pipeline order, then the operator, then replay."""

DEFAULT_USER_PREFIX = "cdb-"
"""ACL user names are ``<prefix><role>``: ``cdb-ws`` ... ``cdb-operator``."""

Password = str | SecretStr

# Every user: PING (health checks) and SELECT, because a REDIS_URL may name a database
# (key patterns apply in every database). From Redis 7.2 also CLIENT SETINFO, which
# redis-py sends right after AUTH: refused, redis-py ignores it, but every connection
# would add a false alarm to ACL LOG. (Redis 7.0 does not know the subcommand and
# refuses an ACL file that names it.)
_CONNECT = ("+ping", "+select")
_SETINFO = "+client|setinfo"
_SETINFO_SINCE = (7, 2)
MIN_REDIS_VERSION = (7, 0)
"""ACL selectors (one capability = one ``(...)`` group) need Redis 7.0."""
DEFAULT_REDIS_VERSION = (7, 2)
"""The server version the generated rules target unless told (``redis:7`` images are 7.2+)."""

# A service's own live-status document (core.status): SET PX, GET, EXPIRE, DEL on shutdown.
_STATUS = ("+set", "+get", "+expire", "+del")
# What core.redis's consumer sends on its input stream.
_CONSUME = (
    "+xgroup|create",
    "+xreadgroup",
    "+xread",  # core.redis.fence: wait for new entries without taking any
    "+xrevrange",  # core.redis.fence: the id to wait after
    "+exists",  # core.redis.fence: the lost-writes check runs only on a stream that exists
    "+xack",
    "+xautoclaim",
    "+xpending",
    "+xinfo|groups",
    "+xinfo|stream",
    "+xlen",
    "+xrange",  # a new partition owner replays what the group already handled
    "+xinfo|consumers",  # core.redis.group_cleanup: find dead consumers...
    "+xgroup|delconsumer",  # ...and remove them (only with nothing pending)
)
# core.redis.instance_claim: SET NX PX, GET/PTTL to name the holder, refresh and release by script.
_CLAIM = ("+set", "+get", "+pttl", "+eval", "+pexpire", "+del")
# The lease and membership scripts (core.redis.leases) and the commands they run.
_LEASES = (
    "+eval",
    "+get",
    "+set",
    "+pexpire",
    "+del",
    "+time",
    "+zadd",
    "+zrem",
    "+zremrangebyscore",
    "+zrange",
)
# Services read the partition count and may create it once; SETNX cannot overwrite, so no
# service can change (or delete) the count the others run with. The operator owns changes.
_TOPOLOGY = ("+get", "+setnx")
_TOPOLOGY_ADMIN = ("+set", "+del")
# ws's resume positions (services.ws.position): one hash, read at start, written per batch.
_POSITIONS = ("+hget", "+hset")
# Services that publish each message at most once per id (execution's order results).
_ONCE_PUBLISHERS = frozenset({ServiceName.EXECUTION})
# What the operator's tools read.
_INSPECT = (
    "+scan",
    "+get",
    "+type",
    "+ttl",
    "+pttl",
    "+exists",
    "+xrange",
    "+xrevrange",
    "+xread",
    "+xlen",
    "+xpending",
    "+xinfo|stream",
    "+xinfo|groups",
    "+xinfo|consumers",
    "+subscribe",
    "+unsubscribe",
    "+hgetall",  # the dlq_replayed marks (cdb dlq list, cutover's dead-letter review)
)
# Replay bookkeeping: delete a replayed letter, or mark it (dead-letter id -> new stream id).
_REPLAY_MARKS = ("+xdel", "+hgetall", "+hset", "+hdel")
_CATCH_UP = ("+xgroup|setid", "+xack")
_GLOB = frozenset("*?[]\\")


def acl_user(role: ServiceName | str, user_prefix: str = DEFAULT_USER_PREFIX) -> str:
    """The ACL user name of ``role`` (a service or :data:`OPERATOR`)."""
    name = role.value if isinstance(role, ServiceName) else role
    if name not in ROLES:
        raise ConfigError("role", name, ROLES, "an ACL role")
    return f"{user_prefix}{name}"


def _checked(keys: KeySpace) -> KeySpace:
    # Key names go into ACL patterns verbatim; a glob character in the prefix would
    # silently widen every rule, so it is refused rather than escaped.
    if _GLOB & set(keys.prefix):
        raise ConfigError(
            "KEY_PREFIX", keys.prefix, ["a prefix without * ? [ ] \\"], "it becomes an ACL pattern"
        )
    return keys


def _selector(*tokens: str) -> str:
    return "(" + " ".join(tokens) + ")"


def _connect(version: tuple[int, int]) -> list[str]:
    if version < MIN_REDIS_VERSION:
        shown = ".".join(map(str, version))
        raise ConfigError("redis version", shown, ["7.0 or newer"], "ACL selectors need Redis 7.0")
    return [*_CONNECT, _SETINFO] if version >= _SETINFO_SINCE else list(_CONNECT)


def _service_rules(keys: KeySpace, service: ServiceName, version: tuple[int, int]) -> list[str]:
    out, bad = service.produces, service.dead_letters
    rules = [
        *_connect(version),
        _selector(f"~{keys.status(service, '*')}", *_STATUS),
        # core.redis.instance_claim: one live process per instance name (SET NX PX, a
        # compare-and-set refresh and delete by script).
        _selector(f"~{keys.instance_claim(service, '*')}", *_CLAIM),
        _selector(*(f"%W~{s}" for s in keys.streams(out)), f"&{keys.channel(out)}", "+publish", "+xadd"),
        _selector(f"%W~{keys.dlq(bad)}", "+xadd"),
        # core.redis.consumer: an output stream's last id must not be older than what was written.
        _selector(*(f"~{s}" for s in keys.streams(out)), "+xinfo|stream"),
        _selector(f"~{keys.topology()}", *_TOPOLOGY),
    ]
    if service is ServiceName.WS:
        rules.append(_selector(f"~{keys.source_positions()}", *_POSITIONS))
    readers = [s for s in ServiceName if s.consumes is out]
    if readers:
        # core.versions.live: before writing, read what the consumers of its output can read.
        rules.append(_selector(*(f"%R~{keys.status(s, '*')}" for s in readers), "+scan", "+get"))
    markers: list[str] = []
    if service in _ONCE_PUBLISHERS:
        # services.execution.once: one script checks a per-message marker beside the stream,
        # appends and publishes (EVALSHA, EVAL when the server lacks it). Each needs both its
        # keys in one selector; the script's own XADD/PUBLISH pass the selector above, its
        # GET/SET on the markers the second one.
        markers = [f"~{keys.published_pattern(out, p)}" for p in range(keys.partitions)]
        rules.append(_selector(*(f"~{s}" for s in keys.streams(out)), *markers, "+eval", "+evalsha"))
        rules.append(_selector(*markers, "+get", "+set"))
        # The same script checks a marker's entry is still on the stream (a lost result is
        # published again): XRANGE on its own output streams.
        rules.append(_selector(*(f"~{s}" for s in keys.streams(out)), "+xrange"))
    source = service.consumes
    if source is not None:
        rules.append(_selector(*(f"~{s}" for s in keys.streams(source)), *_CONSUME))
        # core.versions.live: before reading, what the producers of its input write.
        writers = [s for s in ServiceName if s.produces is source]
        rules.append(_selector(*(f"%R~{keys.status(s, '*')}" for s in writers), "+scan", "+get"))
        # services.partitions: a state rebuild leaves out the entries its input's dead letters
        # hold (DeadLetters.parked): read them and the replay marks, never write.
        rules.append(
            _selector(f"%R~{keys.dlq(source)}", f"%R~{keys.dlq_replayed(source)}", "+xrange", "+hgetall")
        )
        # core.redis.topology.ensure_lease_setting: the service's lease TTL, created once, compared.
        rules.append(_selector(f"~{keys.lease_setting(service)}", *_TOPOLOGY))
        leases = [f"~{k}" for k in keys.leases(service)]
        rules.append(_selector(*leases, f"~{keys.members(service)}", *_LEASES))
        # core.redis.fence: one script checks the lease and reads/acks the stream (EVALSHA, EVAL
        # when the server lacks it: core.redis.scripts). Each needs both keys in one selector;
        # its GET passes the lease rule, XREADGROUP/XACK the stream's.
        rules.append(_selector(*leases, *(f"~{s}" for s in keys.streams(source)), "+eval", "+evalsha"))
        # core.redis.guarded: a batch's outputs are written by a script that checks the lease
        # first (its GET passes the lease rule, its PUBLISH/XADD the output rule above); the
        # publish-once script does too under a lease, with its marker as a third key.
        outputs = [f"~{s}" for s in keys.streams(out)]
        rules.append(_selector(*leases, *outputs, *markers, "+eval", "+evalsha"))
    return rules


def _read_everything(keys: KeySpace) -> str:
    channels = [f"&{keys.channel(t)}" for t in Topic]
    return _selector(f"%R~{keys.all_keys_pattern()}", *channels, *_INSPECT)


def _operator_rules(keys: KeySpace, version: tuple[int, int]) -> list[str]:
    # Read and administer, never write a topic: no PUBLISH, no XADD (no forged orders).
    return [
        *_connect(version),
        _read_everything(keys),
        _selector(
            f"~{keys.topology()}", *(f"~{keys.lease_setting(s)}" for s in ServiceName), *_TOPOLOGY_ADMIN
        ),
        # `cdb dlq review` records, once, the dead letters a person has reviewed (a field of
        # the <topic>_dlq_replayed hash); HSET there changes no message and no stream.
        _selector(*(f"~{keys.dlq_replayed(t)}" for t in Topic), "+hset"),
    ]


def _replay_rules(keys: KeySpace, version: tuple[int, int]) -> list[str]:
    # core.redis.dlq_replay: publish the fixed message like a producer does, then delete the
    # letter or mark it in the dlq_replayed hash.
    channels = [f"&{keys.channel(t)}" for t in Topic]
    return [
        *_connect(version),
        _read_everything(keys),
        _selector(*(f"%W~{s}" for t in Topic for s in keys.streams(t)), *channels, "+publish", "+xadd"),
        _selector(
            *(f"~{keys.dlq(t)}" for t in Topic),
            *(f"~{keys.dlq_replayed(t)}" for t in Topic),
            *_REPLAY_MARKS,
        ),
        # Catch-up (core.redis.dlq_catchup): move a stopped consumer's group back, ack what it re-reads.
        _selector(*(f"~{s}" for t in Topic for s in keys.streams(t)), *_CATCH_UP),
        # core.redis.dlq_lock: one replay per topic at a time, held like an instance claim.
        _selector(*(f"~{keys.dlq_replay_lock(t)}" for t in Topic), *_CLAIM),
    ]


def acl_rules(
    keys: KeySpace,
    *,
    user_prefix: str = DEFAULT_USER_PREFIX,
    redis_version: tuple[int, int] = DEFAULT_REDIS_VERSION,
) -> dict[str, list[str]]:
    """``ACL SETUSER`` rule tokens per user name (roles in :data:`ROLES` order), without
    ``on`` and without a password, for a server of ``redis_version``.

    Each list starts with ``reset`` (no keys, channels, commands or passwords, user
    off), so applying it again replaces the user's rules instead of adding to them.
    """
    keys = _checked(keys)
    base = ["reset", "resetchannels"]
    rules = {acl_user(s, user_prefix): [*base, *_service_rules(keys, s, redis_version)] for s in ServiceName}
    rules[acl_user(OPERATOR, user_prefix)] = [*base, *_operator_rules(keys, redis_version)]
    rules[acl_user(REPLAY, user_prefix)] = [*base, *_replay_rules(keys, redis_version)]
    return rules


def password_hash(password: Password) -> str:
    """The ``#<sha256 hex>`` ACL token of ``password`` (Redis stores only this)."""
    text = password.get_secret_value() if isinstance(password, SecretStr) else password
    if not text:
        raise ConfigError("password", "<empty>", ["a non-empty secret"], "an ACL password")
    return "#" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def _enable(role: str, passwords: Mapping[str, Password] | None) -> list[str]:
    if passwords is None:
        return ["off"]  # template: the rules without any credential; nobody can log in
    if role not in passwords:
        raise ConfigError(f"password of {role}", "<missing>", ["a non-empty secret"], "every role needs one")
    return ["on", password_hash(passwords[role])]


def acl_file(
    keys: KeySpace,
    passwords: Mapping[str, Password] | None = None,
    *,
    user_prefix: str = DEFAULT_USER_PREFIX,
    redis_version: tuple[int, int] = DEFAULT_REDIS_VERSION,
) -> str:
    """The text of a Redis ``aclfile``: ``passwords`` by role (``ws`` ... ``replay``),
    written as SHA-256 only; with ``passwords=None`` a template whose users are all off.

    The ``default`` user (every connection before AUTH) is off: every command of a
    connection that has not logged in is refused with ``NOAUTH`` (which is still an
    answer, enough for a health check). Without its line Redis would create it with
    every permission. Redis accepts no comment lines in an ACL file: docs/security.md
    explains this one.
    """
    rules = acl_rules(keys, user_prefix=user_prefix, redis_version=redis_version)
    lines = [_DEFAULT_USER]
    for role in ROLES:
        user = acl_user(role, user_prefix)
        lines.append(" ".join(["user", user, *rules[user], *_enable(role, passwords)]))
    return "\n".join(lines) + "\n"


DEFAULT_USER_RULES = ("off", "resetpass", "resetkeys", "resetchannels", "-@all")
"""The ``default`` user: disabled, no password, no key, channel or command."""
_DEFAULT_USER = " ".join(["user", "default", *DEFAULT_USER_RULES])


def server_version(client: Any) -> tuple[int, int]:
    """``(major, minor)`` of the server ``client`` talks to (from ``INFO server``)."""
    text = str(client.info("server")["redis_version"])
    major, minor = (int(p) for p in text.split(".")[:2])
    return major, minor


PASSWORD_VARIABLE = "CDB_ACL_{role}_PASSWORD"
"""Where :func:`passwords_from_env` finds a role's password (``<name>_FILE``: a file holding it)."""
MIN_PASSWORD_LENGTH = 16


def passwords_from_env(environ: Mapping[str, str], roles: Sequence[str] = ROLES) -> dict[str, SecretStr]:
    """Each role's password from ``CDB_ACL_<ROLE>_PASSWORD``, or from the file named by
    ``CDB_ACL_<ROLE>_PASSWORD_FILE`` (a docker secret). :class:`ConfigError` names the
    variable of a missing or short one; the value is never shown."""
    out: dict[str, SecretStr] = {}
    for role in roles:
        variable = PASSWORD_VARIABLE.format(role=role.upper())
        if f"{variable}_FILE" in environ:
            variable = f"{variable}_FILE"
            try:
                text = Path(environ[variable]).read_text(encoding="utf-8").rstrip("\n")
            except OSError as exc:
                raise ConfigError(
                    variable, environ[variable], ["a readable file"], str(exc.strerror)
                ) from None
        else:
            text = environ.get(variable, "")
        if len(text) < MIN_PASSWORD_LENGTH:
            shown = "<unset>" if not text else "<too short>"
            hint = "e.g. `openssl rand -hex 32`; the same value goes into that service's REDIS_URL"
            raise ConfigError(variable, shown, [f"a secret of {MIN_PASSWORD_LENGTH}+ characters"], hint)
        out[role] = SecretStr(text)
    return out


def apply_acl(
    client: Any,
    keys: KeySpace,
    passwords: Mapping[str, Password],
    *,
    user_prefix: str = DEFAULT_USER_PREFIX,
    roles: Sequence[str] = ROLES,
) -> list[str]:
    """Create or replace the users of ``roles`` on a live server with ``ACL SETUSER``
    (``client``: a blocking ``redis.Redis`` with ACL admin rights); returns their names.
    The rules fit the server's version."""
    rules = acl_rules(keys, user_prefix=user_prefix, redis_version=server_version(client))
    created = []
    for role in roles:
        user = acl_user(role, user_prefix)
        client.execute_command("ACL", "SETUSER", user, *rules[user], *_enable(role, passwords))
        created.append(user)
    return created


def disable_default_user(client: Any) -> None:
    """Turn the ``default`` user off on a live server (:data:`DEFAULT_USER_RULES`).

    Refused when ``client`` is itself logged in as ``default``: the admin would lose the
    only account that can undo it (log in as an admin user of your own first)."""
    me = client.execute_command("ACL", "WHOAMI")
    if (me.decode() if isinstance(me, bytes) else str(me)) == "default":
        raise ConfigError(
            "REDIS_URL",
            "<the default user>",
            ["an admin user other than default"],
            "it would lock itself out",
        )
    client.execute_command("ACL", "SETUSER", "default", *DEFAULT_USER_RULES)


def delete_acl_users(client: Any, users: Sequence[str]) -> int:
    """``ACL DELUSER`` exactly ``users``; returns how many existed."""
    return int(client.execute_command("ACL", "DELUSER", *users)) if users else 0
