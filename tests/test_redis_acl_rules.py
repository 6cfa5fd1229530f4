"""The ACL rules are derived from KeySpace and ServiceName; the ACL file never holds a secret.

Unit tests (no server). The live behaviour of these rules is in test_redis_acl_live.py.
"""

from __future__ import annotations

import re
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cdb.cli.acl import default_acl_path
from cdb.cli.main import app
from core.errors import ConfigError
from core.redis.acl import (
    OPERATOR,
    REPLAY,
    ROLES,
    acl_file,
    acl_rules,
    acl_user,
    password_hash,
    passwords_from_env,
)
from core.settings import redact_url
from core.topics import KeySpace, ServiceName, Topic

pytestmark = pytest.mark.strict_path  # runs in the week-4 deletion rehearsal too (test_week4_deletion)

SECRETS = {role: f"s3cret-{role}-0123456789abcdef" for role in ROLES}


def _selectors(rules: list[str]) -> list[str]:
    return [r for r in rules if r.startswith("(")]


def _writable_by_xadd(rules: list[str]) -> set[str]:
    """Keys a user may XADD to: the %W~/~ patterns of selectors that allow +xadd."""
    out: set[str] = set()
    for sel in _selectors(rules):
        tokens = sel.strip("()").split()
        if "+xadd" in tokens:
            out |= {re.sub(r"^(%W~|~)", "", t) for t in tokens if t.startswith(("%W~", "~"))}
    return out


def test_acl_rules__one_user_per_service_plus_operator_and_replay() -> None:
    users = acl_rules(KeySpace())
    assert list(users) == [f"cdb-{s.value}" for s in ServiceName] + ["cdb-operator", "cdb-replay"]
    assert all(rules[:2] == ["reset", "resetchannels"] for rules in users.values())


def test_acl_rules__never_carry_a_password_or_enable_a_user() -> None:
    for rules in acl_rules(KeySpace()).values():
        assert not {"on", "nopass", "allkeys", "allchannels", "+@all"} & set(rules)
        assert not [r for r in rules if r.startswith((">", "#"))]


@pytest.mark.parametrize("service", list(ServiceName))
def test_acl_rules__a_service_appends_only_to_its_output_and_its_dead_letters(service: ServiceName) -> None:
    keys = KeySpace()
    rules = acl_rules(keys)[acl_user(service)]
    assert _writable_by_xadd(rules) == {keys.stream(service.produces), keys.dlq(service.dead_letters)}
    assert f"&{keys.channel(service.produces)}" in " ".join(rules)
    assert len(re.findall(r"&\S+", " ".join(rules))) == 1


def test_acl_rules__ws_dead_letters_to_market_data_and_reads_no_stream() -> None:
    rules = " ".join(acl_rules(KeySpace())["cdb-ws"])
    assert "%W~market_data_dlq" in rules
    assert "+xreadgroup" not in rules


def test_acl_rules__signal_reads_market_data_with_group_commands_only() -> None:
    rules = acl_rules(KeySpace())["cdb-signal"]
    (consume,) = [s for s in _selectors(rules) if "+xreadgroup" in s]
    assert consume.split()[0] == "(~market_data_stream"
    assert "+xadd" not in consume


def test_acl_rules__follow_the_key_prefix() -> None:
    keys = KeySpace(prefix="staging:")
    text = " ".join(" ".join(r) for r in acl_rules(keys).values())
    for topic in Topic:
        assert f"~{keys.stream(topic)}" in text
    patterns = re.findall(r"[~&]([^\s)]+)", text)
    assert patterns
    assert all(p.startswith("staging:") for p in patterns), patterns


def _tokens(selector: str) -> list[str]:
    return selector.strip("()").split()


def test_acl_rules__operator_reads_every_key_and_writes_only_the_topology_key_and_reviews() -> None:
    keys = KeySpace(prefix="p:")
    rules = acl_rules(keys)[acl_user(OPERATOR)]
    (read,) = [s for s in _selectors(rules) if "+scan" in s]
    assert "%R~p:*" in read
    assert not {"+publish", "+xadd", "+xdel"} & {t for s in _selectors(rules) for t in _tokens(s)}
    (write,) = [s for s in _selectors(rules) if "+set" in _tokens(s)]
    # The topology: the partition count and each service's recorded lease TTL (`cdb topology reset`).
    topology = [f"~{keys.topology()}", *(f"~{keys.lease_setting(s)}" for s in ServiceName)]
    assert [t for t in _tokens(write) if "~" in t] == topology
    # `cdb dlq review` records a review in the replayed-marks hashes, and nothing else.
    (review,) = [s for s in _selectors(rules) if "+hset" in _tokens(s)]
    assert {t for t in _tokens(review) if "~" in t} == {f"~{keys.dlq_replayed(t)}" for t in Topic}


def test_acl_rules__replay_reads_every_key_and_republishes_to_any_topic() -> None:
    keys = KeySpace(prefix="p:")
    rules = acl_rules(keys)[acl_user(REPLAY)]
    assert any("%R~p:*" in s for s in _selectors(rules))
    assert _writable_by_xadd(rules) == {keys.stream(t) for t in Topic}
    (marks,) = [s for s in _selectors(rules) if "+hset" in s]
    assert {f"~{keys.dlq_replayed(t)}" for t in Topic} <= set(_tokens(marks))
    assert not [s for s in _selectors(rules) if f"~{keys.topology()}" in _tokens(s)]


@pytest.mark.parametrize("service", list(ServiceName))
def test_acl_rules__a_service_may_create_the_topology_key_but_never_overwrite_or_delete_it(
    service: ServiceName,
) -> None:
    keys = KeySpace()
    selectors = _selectors(acl_rules(keys)[acl_user(service)])
    (topology,) = [s for s in selectors if f"~{keys.topology()}" in _tokens(s)]
    assert set(_tokens(topology)) == {f"~{keys.topology()}", "+get", "+setnx"}


def test_acl_file__default_user_is_off_with_no_command() -> None:
    (default,) = [line for line in acl_file(KeySpace()).splitlines() if line.startswith("user default ")]
    tokens = default.split()
    assert "off" in tokens
    assert not {"on", "nopass", "+ping", "+@all", "allkeys"} & set(tokens)


@pytest.mark.parametrize("prefix", ["a*", "x?:", "[ab]:", "back\\slash:"])
def test_acl_rules__a_glob_character_in_the_prefix__is_refused(prefix: str) -> None:
    with pytest.raises(ConfigError, match="KEY_PREFIX"):
        acl_rules(KeySpace(prefix=prefix))


def test_acl_rules__client_setinfo_only_for_servers_that_know_it() -> None:
    assert "+client|setinfo" in acl_rules(KeySpace(), redis_version=(7, 2))["cdb-ws"]
    assert "+client|setinfo" not in acl_rules(KeySpace(), redis_version=(7, 0))["cdb-ws"]
    with pytest.raises(ConfigError, match=r"7\.0"):
        acl_rules(KeySpace(), redis_version=(6, 2))


def test_acl_user__unknown_role__is_refused() -> None:
    with pytest.raises(ConfigError):
        acl_user("admin")


def test_acl_file__template_has_every_user_off_and_no_credential() -> None:
    lines = acl_file(KeySpace()).splitlines()
    assert lines[0] == "user default off resetpass resetkeys resetchannels -@all"
    for line in lines[1:]:
        assert line.startswith("user cdb-")
        assert line.endswith(" off")
        assert not re.search(r"\s[#>]", line)


def test_acl_file__rendered_holds_hashes_never_the_passwords() -> None:
    text = acl_file(KeySpace(), SECRETS)
    for role, secret in SECRETS.items():
        assert secret not in text
        assert f"user {acl_user(role)} " in text
        assert f" on {password_hash(secret)}" in text


def test_acl_file__rendered_without_a_role_password__is_refused() -> None:
    with pytest.raises(ConfigError, match="operator"):
        acl_file(KeySpace(), {r: s for r, s in SECRETS.items() if r != OPERATOR})


def test_acl_file__committed_template_matches_a_fresh_export() -> None:
    committed = default_acl_path().read_text(encoding="utf-8")
    assert committed == acl_file(KeySpace()), "deploy/redis/users.acl is stale: run `cdb acl export`"


def test_password_hash__is_sha256_hex() -> None:
    assert password_hash("pw") == "#30c952fab122c3f9759f02a6d95c3758b246b4fee239957b2d4fee46e26170c4"


def test_passwords_from_env__reads_variables_and_secret_files(tmp_path: Path) -> None:
    secret_file = tmp_path / "operator.secret"
    secret_file.write_text(SECRETS[OPERATOR] + "\n")
    env = {f"CDB_ACL_{r.upper()}_PASSWORD": SECRETS[r] for r in ROLES if r != OPERATOR}
    env["CDB_ACL_OPERATOR_PASSWORD_FILE"] = str(secret_file)
    passwords = passwords_from_env(env)
    assert {r: p.get_secret_value() for r, p in passwords.items()} == SECRETS


@pytest.mark.parametrize("value", ["", "pw-42-x"])
def test_passwords_from_env__missing_or_short__names_the_variable_not_the_value(value: str) -> None:
    env = {f"CDB_ACL_{r.upper()}_PASSWORD": SECRETS[r] for r in ROLES}
    env["CDB_ACL_RISK_PASSWORD"] = value
    with pytest.raises(ConfigError, match="CDB_ACL_RISK_PASSWORD") as caught:
        passwords_from_env(env)
    assert value == "" or value not in str(caught.value)


def test_redact_url__hides_the_acl_password_of_a_service_url() -> None:
    url = f"redis://cdb-ws:{SECRETS['ws']}@redis:6379/0"
    assert SECRETS["ws"] not in redact_url(url)
    assert "cdb-ws" in redact_url(url)


def test_cli_acl_export__render_writes_an_owner_only_file_and_never_prints_a_secret(tmp_path: Path) -> None:
    env = {f"CDB_ACL_{r.upper()}_PASSWORD": SECRETS[r] for r in ROLES}
    target = tmp_path / "users.acl"
    result = CliRunner().invoke(app, ["acl", "export", "--render", "--out", str(target)], env=env)
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    text = target.read_text()
    assert text == acl_file(KeySpace(), SECRETS)
    assert not [s for s in SECRETS.values() if s in result.output or s in text]


def test_cli_acl_export__render_without_passwords__exits_2_naming_the_variable(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["acl", "export", "--render", "--out", str(tmp_path / "x.acl")], env={})
    assert result.exit_code == 2
    assert "CDB_ACL_WS_PASSWORD" in result.output
    assert not (tmp_path / "x.acl").exists()


def test_cli_acl_export__check__passes_on_the_committed_template() -> None:
    result = CliRunner().invoke(app, ["acl", "export", "--check", "--key-prefix", ""])
    assert result.exit_code == 0, result.output
