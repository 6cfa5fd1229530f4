"""``cdb`` errors: one line on stderr naming what to fix, a non-zero exit, no traceback, no secret.

Run as real subprocesses (what an operator and docker see): a missing replay file, an
unparseable URL, Redis down at start, PostgreSQL down or misnamed, an option value a command
cannot use (a usage error: exit 2), ``cdb dlq show`` with a bad id, and text that rich would
read as markup (``[/b]`` used to crash the error printer, ``[red]`` vanished).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from urllib.parse import urlsplit

import pytest

from cdb.cli import main as cli_main
from cdb.cli.output import exit_with, redact_urls
from core.errors import CdbError
from core.topics import KeySpace
from tests.ops_helpers import CDB, CLEAN_ENV, ROOT
from tests.support.servers import PG_ADMIN_URL

pytestmark = pytest.mark.integration

SECRET = "S3cretPw"
MARKUP = "[/b] [red]x[/red] [...]"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # closed again when the block ends: nothing listens


def _cdb(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in CLEAN_ENV and k != "CDB_TRACEBACK"}
    return subprocess.run(
        [str(CDB), *args],
        capture_output=True,
        text=True,
        timeout=90,
        cwd=ROOT,
        env={**base, "COLUMNS": "80", **env},
        check=False,
    )


def _one_line_error(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode != 0, proc.stdout
    assert "Traceback" not in proc.stderr + proc.stdout
    assert SECRET not in proc.stderr + proc.stdout
    lines = [line for line in proc.stderr.splitlines() if line.strip() and not line.startswith("{")]
    assert len(lines) == 1, proc.stderr  # JSON log lines aside (cdb service logs its start)
    assert lines[0].startswith("error: ")
    return lines[0]


def test_cdb_run__missing_trades_file__one_line_naming_the_option() -> None:
    line = _one_line_error(_cdb("run", "--data", f"/nonexistent/{MARKUP}.csv"))
    assert "--data=" in line
    assert f"/nonexistent/{MARKUP}.csv" in line  # the markup survives, printed as it is
    assert "no such file" in line


def test_cdb_service_ws__missing_replay_file__one_line_naming_ws_replay_file(
    redis_url: str, keys: KeySpace
) -> None:
    proc = _cdb(
        "service", "ws", REDIS_URL=redis_url, KEY_PREFIX=keys.prefix, WS_REPLAY_FILE="/nonexistent/t.csv"
    )
    line = _one_line_error(proc)
    assert line.startswith("error: WS_REPLAY_FILE='/nonexistent/t.csv'")


@pytest.mark.parametrize(
    ("args", "variable", "url"),
    [
        (("run",), "REDIS_URL", f"redis//cdb:{SECRET}@127.0.0.1:6379/0"),
        (("service", "signal"), "REDIS_URL", f"http://cdb:{SECRET}@127.0.0.1:6379/0"),
        (("service", "execution"), "DATABASE_URL", f"postgresq://cdb:{SECRET}@127.0.0.1/cdb"),
        (("run",), "DATABASE_URL", f"postgresq://cdb:{SECRET}@127.0.0.1/cdb"),
    ],
)
def test_cdb__unparseable_url__one_line_naming_the_variable_without_password(
    args: tuple[str, ...], variable: str, url: str, redis_url: str
) -> None:
    env = {"REDIS_URL": redis_url, variable: url}
    line = _one_line_error(_cdb(*args, **env))
    assert line.startswith(f"error: {variable}=")
    assert "expected" in line  # what a URL of this variable looks like


@pytest.mark.parametrize("args", [("status",), ("dlq", "list"), ("cutover", "check")])
def test_cdb_operator_commands__unparseable_redis_url__one_line_naming_it(args: tuple[str, ...]) -> None:
    line = _one_line_error(_cdb(*args, REDIS_URL=f"redis//cdb:{SECRET}@127.0.0.1:6379/0"))
    assert line.startswith("error: REDIS_URL (--redis-url)=")
    assert "expected" in line  # what a URL of this variable looks like


@pytest.mark.parametrize(
    "args",
    [("run",), ("service", "signal"), ("status",), ("dlq", "list"), ("dlq", "show", "1-0")],
)
def test_cdb__redis_down_at_start__one_line_naming_redis(args: tuple[str, ...]) -> None:
    url = f"redis://cdb:{SECRET}@127.0.0.1:{_closed_port()}/0"
    line = _one_line_error(_cdb(*args, REDIS_URL=url))
    assert f"redis://cdb:***@127.0.0.1:{url.rsplit(':', 1)[1]}" in line
    assert "does not answer" in line or "not reachable" in line


def _exit_2_one_line(proc: subprocess.CompletedProcess[str]) -> str:
    line = _one_line_error(proc)
    assert proc.returncode == 2, line
    assert "unexpected" not in line
    return line


@pytest.mark.parametrize(
    ("args", "shown"),
    [
        (("cutover", "check", "--dlq-reviewed-before", "garbage"), "--dlq-reviewed-before='garbage'"),
        (("cutover", "apply", "--plan", "--dlq-reviewed-before", "1-x"), "--dlq-reviewed-before='1-x'"),
        (("cutover", "rollback", "--backup", "/nonexistent/backup"), "--backup='/nonexistent/backup'"),
        (("cutover", "rollback", "--backup", str(ROOT / "tests")), f"--backup={str(ROOT / 'tests')!r}"),
        (
            ("versions", "retire-rollback", "--backup", "/nonexistent/backup"),
            "--backup='/nonexistent/backup'",
        ),
        (("run", "--log-level", "LOUD"), "--log-level='LOUD'"),
    ],
)
def test_cdb__bad_option_value__usage_error_exit_2_one_line_naming_the_option(
    args: tuple[str, ...], shown: str
) -> None:
    # Redis on a closed port: the value is refused as given, before any server is asked.
    proc = _cdb(*args, REDIS_URL=f"redis://127.0.0.1:{_closed_port()}/0")
    line = _exit_2_one_line(proc)
    assert line.startswith(f"error: {shown} is not accepted; use one of: ")


def _pg_url(user: str, password: str | None, database: str, port: int | None = None) -> str:
    """A URL of the test PostgreSQL server's host (on ``port`` if given) with these credentials."""
    admin = urlsplit(PG_ADMIN_URL)
    secret = f":{password}" if password is not None else ""
    return f"postgresql://{user}{secret}@{admin.hostname}:{port or admin.port or 5432}/{database}"


def _pg_env(args: tuple[str, ...], database_url: str, redis_url: str, keys: KeySpace) -> dict[str, str]:
    """``cdb service`` on the shared Redis under the test's prefix; ``cdb run`` on its embedded
    fakeredis (nothing of it lands on the shared Redis, whatever it does)."""
    if args[0] == "service":
        return {"DATABASE_URL": database_url, "REDIS_URL": redis_url, "KEY_PREFIX": keys.prefix}
    return {"DATABASE_URL": database_url}


PG_COMMANDS = [("run",), ("service", "execution")]


@pytest.mark.parametrize("args", PG_COMMANDS)
def test_cdb__database_does_not_exist__one_line_naming_postgresql_and_the_database(
    args: tuple[str, ...], redis_url: str, keys: KeySpace
) -> None:
    admin = urlsplit(PG_ADMIN_URL)
    name = f"cdb_missing_{uuid.uuid4().hex[:8]}"
    url = _pg_url(admin.username or "postgres", admin.password, name)
    line = _exit_2_one_line(_cdb(*args, **_pg_env(args, url, redis_url, keys)))
    assert line.startswith("error: PostgreSQL at postgresql://")
    assert f'refuses the connection: database "{name}" does not exist' in line
    assert not admin.password or admin.password not in line


@pytest.mark.parametrize("args", PG_COMMANDS)
def test_cdb__unknown_role__one_line_naming_postgresql_and_the_role_password_masked(
    args: tuple[str, ...], redis_url: str, keys: KeySpace
) -> None:
    url = _pg_url("cdb_no_such_role", SECRET, "postgres")
    line = _exit_2_one_line(_cdb(*args, **_pg_env(args, url, redis_url, keys)))  # SECRET nowhere
    assert line.startswith("error: PostgreSQL at postgresql://cdb_no_such_role:***@")
    assert "refuses the connection" in line
    assert '"cdb_no_such_role"' in line  # the role does not exist (or its password failed)


@pytest.mark.parametrize("args", PG_COMMANDS)
def test_cdb__postgresql_down__one_line_within_seconds_naming_it_password_masked(
    args: tuple[str, ...], redis_url: str, keys: KeySpace
) -> None:
    port = _closed_port()
    url = _pg_url("postgres", SECRET, "cdb", port)
    started = time.monotonic()
    line = _exit_2_one_line(_cdb(*args, **_pg_env(args, url, redis_url, keys)))
    took = time.monotonic() - started
    assert line.startswith("error: PostgreSQL at postgresql://postgres:***@")
    assert f":{port}/cdb (DATABASE_URL) does not answer" in line
    assert took < 15, f"{took:.1f}s"  # cdb run used to wait out its 120 s drain timeout first


@pytest.mark.parametrize("entry_id", ["zzz", "1-x", MARKUP, "99999999999999999999999-0"])
def test_cdb_dlq_show__bad_id__one_line_not_a_traceback(
    entry_id: str, redis_url: str, keys: KeySpace
) -> None:
    line = _one_line_error(_cdb("dlq", "show", entry_id, "--redis-url", redis_url, "--prefix", keys.prefix))
    assert f"{entry_id!r} is not a dead-letter id" in line


def test_cdb_dlq_show__well_formed_unknown_id__one_line_no_such_letter(
    redis_url: str, keys: KeySpace
) -> None:
    line = _one_line_error(_cdb("dlq", "show", "1-0", "--redis-url", redis_url, "--prefix", keys.prefix))
    assert "no dead letter 1-0" in line


def test_cdb__unexpected_error__one_line_with_type_unless_cdb_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def boom() -> None:
        raise RuntimeError(f"boom {MARKUP} at redis://u:{SECRET}@h:1/0\nsecond line")

    monkeypatch.setattr(cli_main, "app", boom)
    monkeypatch.setattr(sys, "argv", ["cdb"])
    monkeypatch.delenv("CDB_TRACEBACK", raising=False)
    with pytest.raises(SystemExit) as exit_info:
        cli_main.main()
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert err == (
        f"error: RuntimeError: boom {MARKUP} at redis://u:***@h:1/0 | second line "
        "(unexpected; CDB_TRACEBACK=1 shows the traceback)\n"
    )
    monkeypatch.setenv("CDB_TRACEBACK", "1")
    with pytest.raises(RuntimeError, match="boom"):
        cli_main.main()


@pytest.mark.parametrize("text", ["[/b]", "[red]x[/red]", "[...]", "a [bold]b[/bold] [/] c\\"])
def test_exit_with__markup_in_error__printed_verbatim(text: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        exit_with(CdbError(f"bad {text} here"))
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == f"error: bad {text} here\n"


def test_exit_with__long_error__stays_on_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        exit_with(CdbError("x" * 500))
    assert capsys.readouterr().err == "error: " + "x" * 500 + "\n"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"at redis://u:{SECRET}@h:6379/0 now", "at redis://u:***@h:6379/0 now"),
        (f"'postgresq://u:{SECRET}@db/x'", "'postgresq://u:***@db/x'"),
        (f"redis://u:{SECRET}@h:99999/0", "redis://u:***@h:99999/0"),
        ("redis://h:6379/0 and unix:///s", "redis://h:6379/0 and unix:///s"),
    ],
)
def test_redact_urls__every_password_in_a_text_hidden(text: str, expected: str) -> None:
    assert redact_urls(text) == expected
