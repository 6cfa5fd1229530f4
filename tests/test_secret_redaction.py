"""Secrets never leave an error path, also when the URL holding them is malformed (issue 14, 7).

``DATABASE_URL='postgresq://user:S3cret@host/db'`` (a mistyped scheme) used to make
``cdb service execution`` print psycopg's ``missing "=" after "<the whole URL>"``. Now a
malformed ``REDIS_URL`` / ``DATABASE_URL`` is refused at start with the value redacted,
:func:`core.settings.redact_url` hides the password of any URL (parseable or not), and
``cdb`` prints an unexpected traceback with every secret scrubbed.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from cdb.cli.main import app
from core.errors import ConfigError
from core.logging import scrub_secrets, scrubbed_excepthook
from core.settings import ServiceSettings, redact_url
from core.topics import ServiceName
from core.urls import DATABASE_SCHEMES, REDIS_SCHEMES, url_problem

CDB = Path(sys.executable).parent / "cdb"
SECRET = "S3cretPassw0rd"

# {p}: where the password goes. Each shape is a mistake someone makes in an env file.
MALFORMED_DATABASE = {
    "mistyped scheme": "postgresq://user:{p}@host/db",
    "no host": "postgresql://user:{p}@/db",
    "port out of range": "postgresql://user:{p}@host:99999/db",
    "port not a number": "postgresql://user:{p}@host:abc/db",
    "unclosed IPv6 bracket": "postgresql://user:{p}@[::1/db",
    "no scheme": "user:{p}@host/db",
    "keyword form": "host=h user=u password={p} dbname=x",
    "the @ forgotten": "postgresql://user:{p}/db",
}
MALFORMED_REDIS = {
    "mistyped scheme": "rdis://cdb-ws:{p}@127.0.0.1:6379/0",
    "no host": "redis://cdb-ws:{p}@/0",
    "port out of range": "redis://cdb-ws:{p}@127.0.0.1:70000/0",
    "unclosed IPv6 bracket": "redis://cdb-ws:{p}@[::1:6379/0",
    "no scheme": "cdb-ws:{p}@127.0.0.1:6379",
    "the @ forgotten": "redis://cdb-ws:{p}/0",
}
PASSWORDS = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.~!*", min_size=1
).map(
    lambda s: f"Pw{s}9"  # never a substring of the rest of a URL template
)


@given(password=PASSWORDS, shape=st.sampled_from([*MALFORMED_DATABASE.values(), *MALFORMED_REDIS.values()]))
def test_redact_url__hides_the_password_of_every_malformed_shape(password: str, shape: str) -> None:
    url = shape.format(p=password)
    shown = redact_url(url)
    assert password not in shown
    assert "***" in shown


@given(password=PASSWORDS, shape=st.sampled_from([*MALFORMED_DATABASE.values(), *MALFORMED_REDIS.values()]))
def test_url_problem__names_the_fault_without_the_password(password: str, shape: str) -> None:
    url = shape.format(p=password)
    schemes = DATABASE_SCHEMES if shape in MALFORMED_DATABASE.values() else REDIS_SCHEMES
    problem = url_problem(url, schemes)
    assert problem is not None
    assert password not in problem


@pytest.mark.parametrize(
    "url",
    [
        "redis://cdb-ws:pw@127.0.0.1:6379/0",
        "rediss://:pw@redis.example:6380",
        "unix:///run/redis.sock?db=1",
        "redis://[::1]:6379/0",
    ],
)
def test_url_problem__well_formed_redis_urls_pass(url: str) -> None:
    assert url_problem(url, REDIS_SCHEMES) is None


def test_redact_url__well_formed_url_keeps_everything_but_the_password() -> None:
    assert redact_url("postgresql://cdb:pw@[::1]:5432/cdb?sslmode=require") == (
        "postgresql://cdb:***@[::1]:5432/cdb?sslmode=require"
    )
    assert redact_url("postgresql://cdb@postgres:5432/cdb") == "postgresql://cdb@postgres:5432/cdb"


@pytest.mark.parametrize(("variable", "shape"), [("DATABASE_URL", s) for s in MALFORMED_DATABASE.values()])
def test_settings__malformed_url__config_error_names_the_variable_and_hides_the_password(
    variable: str, shape: str
) -> None:
    with pytest.raises(ConfigError) as refused:
        ServiceSettings.load(ServiceName.EXECUTION, environ={variable: shape.format(p=SECRET)})
    assert refused.value.variable == variable
    assert SECRET not in str(refused.value)


def test_scrubbed_excepthook__traceback_of_a_driver_error_quoting_the_dsn_is_scrubbed() -> None:
    out = io.StringIO()
    try:
        raise RuntimeError(f'missing "=" after "postgresq://user:{SECRET}@host/db" (password={SECRET})')
    except RuntimeError as exc:
        scrubbed_excepthook(type(exc), exc, exc.__traceback__, out)
    assert "RuntimeError" in out.getvalue()
    assert SECRET not in out.getvalue()
    assert scrub_secrets(f"password='{SECRET} x'") == "password=***"


def _cdb(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "DATABASE_", "KEY_PREFIX"))}
    return subprocess.run(
        [str(CDB), *args],
        env={**base, **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


SERVICE, RUN = ["service", "execution"], ["run"]
CASES = (
    [(SERVICE, "DATABASE_URL", name, shape) for name, shape in MALFORMED_DATABASE.items()]
    + [(SERVICE, "REDIS_URL", name, shape) for name, shape in MALFORMED_REDIS.items()]
    # cdb run resolves the same settings: the repro and two other shapes are enough.
    + [
        (RUN, "DATABASE_URL", n, MALFORMED_DATABASE[n])
        for n in ("mistyped scheme", "no scheme", "the @ forgotten")
    ]
    + [(RUN, "REDIS_URL", "mistyped scheme", MALFORMED_REDIS["mistyped scheme"])]
)


@pytest.mark.parametrize(
    ("command", "variable", "shape"),
    [(c, v, s) for c, v, _, s in CASES],
    ids=[f"cdb {' '.join(c)}-{v}-{f}" for c, v, f, _ in CASES],
)
def test_cdb_subprocess__malformed_url__never_prints_the_password(
    command: list[str], variable: str, shape: str, redis_url: str, tmp_path: Path
) -> None:
    env = {
        "REDIS_URL": redis_url,
        "KEY_PREFIX": f"cdbtest-redact-{os.getpid()}:",
        variable: shape.format(p=SECRET),
    }
    done = _cdb(command, env, tmp_path)
    assert done.returncode == 2, done.stderr[-2000:]
    assert SECRET not in done.stdout + done.stderr
    assert variable in done.stderr
    assert "Traceback" not in done.stderr


OPERATOR_TOOLS = [["status"], ["dlq", "list"], ["health", "signal"], ["topology", "show"], ["acl", "audit"]]


@pytest.mark.parametrize("tool", OPERATOR_TOOLS, ids=" ".join)
@pytest.mark.parametrize("shape", list(MALFORMED_REDIS.values()), ids=list(MALFORMED_REDIS))
def test_cdb_operator_tools__malformed_redis_url__refused_without_the_password(
    tool: list[str], shape: str
) -> None:
    done = CliRunner().invoke(app, tool, env={"REDIS_URL": shape.format(p=SECRET)})
    assert done.exit_code == (1 if tool[0] == "health" else 2), (
        done.output,
        done.exception,
    )  # health: docker's 1
    assert isinstance(done.exception, SystemExit)
    assert SECRET not in done.output
    assert "REDIS_URL" in done.output
