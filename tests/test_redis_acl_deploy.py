"""deploy/redis/render-acl.sh: the committed template plus passwords from the environment.

The script is what docker compose runs in the redis container; it must produce
exactly what ``cdb acl export --render`` would, never print a secret, and leave
no password in the environment of the command it starts.
"""

from __future__ import annotations

import os
import secrets
import subprocess
from pathlib import Path

import pytest
import redis
from redis.exceptions import NoPermissionError

from core.redis.acl import ROLES, acl_file
from core.topics import KeySpace, Topic
from tests.support.redis_version import local_redis_version
from tests.support.servers import ThrowawayRedis

DEPLOY = Path(__file__).resolve().parents[1] / "deploy" / "redis"
SCRIPT = DEPLOY / "render-acl.sh"
TEMPLATE = DEPLOY / "users.acl"


def _passwords() -> dict[str, str]:
    return {role: secrets.token_hex(16) for role in ROLES}


def _env(passwords: dict[str, str]) -> dict[str, str]:
    env = {"PATH": os.environ["PATH"]}
    env.update({f"CDB_ACL_{r.upper()}_PASSWORD": p for r, p in passwords.items()})
    return env


def _render(
    env: dict[str, str], out: Path, *command: str, template: Path = TEMPLATE
) -> subprocess.CompletedProcess[str]:
    args = ["sh", str(SCRIPT), str(template), str(out), *command]
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=30, check=False)


def test_render_acl__renders_what_cdb_acl_export_render_writes(tmp_path: Path) -> None:
    passwords = _passwords()
    out = tmp_path / "users.acl"
    done = _render(_env(passwords), out)
    assert done.returncode == 0, done.stderr
    assert out.read_text() == acl_file(KeySpace(), passwords)
    assert oct(out.stat().st_mode & 0o777) == "0o600"


def test_render_acl__reads_docker_secret_files(tmp_path: Path) -> None:
    passwords = _passwords()
    env = _env(passwords)
    secret = tmp_path / "operator_password"
    secret.write_text(passwords["operator"] + "\n")
    del env["CDB_ACL_OPERATOR_PASSWORD"]
    env["CDB_ACL_OPERATOR_PASSWORD_FILE"] = str(secret)
    done = _render(env, tmp_path / "users.acl")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "users.acl").read_text() == acl_file(KeySpace(), passwords)


@pytest.mark.parametrize("value", [None, "too-short"])
def test_render_acl__missing_or_short_password__fails_naming_the_variable(
    value: str | None, tmp_path: Path
) -> None:
    passwords = _passwords()
    env = _env(passwords)
    if value is None:
        del env["CDB_ACL_RISK_PASSWORD"]
    else:
        env["CDB_ACL_RISK_PASSWORD"] = value
    done = _render(env, tmp_path / "users.acl", "true")
    assert done.returncode == 1
    assert "CDB_ACL_RISK_PASSWORD" in done.stderr
    shown = done.stdout + done.stderr
    assert not [p for p in [*passwords.values(), value] if p and p in shown]
    assert list(tmp_path.iterdir()) == []


def test_render_acl__starts_the_command_without_the_passwords_in_its_environment(tmp_path: Path) -> None:
    passwords = _passwords()
    env = {**_env(passwords), "KEEP_ME": "1"}
    done = _render(env, tmp_path / "users.acl", "env")
    assert done.returncode == 0, done.stderr
    assert "KEEP_ME=1" in done.stdout
    assert "CDB_ACL_" not in done.stdout


def test_render_acl__output_loads_in_redis_server_and_each_user_logs_in(tmp_path: Path) -> None:
    # The committed template targets Redis 7.2+; render one for the local server the same way.
    template = tmp_path / "template.acl"
    template.write_text(acl_file(KeySpace(), redis_version=local_redis_version()))
    passwords = _passwords()
    out = tmp_path / "users.acl"
    assert _render(_env(passwords), out, template=template).returncode == 0
    server = ThrowawayRedis(extra_args=("--aclfile", str(out))).start()
    try:
        for role, password in passwords.items():
            client = redis.Redis(port=server.port, username=f"cdb-{role}", password=password)
            assert client.ping()
            if role == "signal":
                assert client.publish(KeySpace().channel(Topic.SIGNALS), b"x") == 0
                with pytest.raises(NoPermissionError):
                    client.publish(KeySpace().channel(Topic.ORDERS), b"x")
            client.close()
    finally:
        server.close()
