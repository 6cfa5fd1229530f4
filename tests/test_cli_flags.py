"""``cdb flags`` and ``cdb demo``: tested with typer's CliRunner, and ``cdb demo`` once as a
real subprocess of the installed entry point."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from cdb.cli import app
from core.settings import BOOL_WORDS, ServiceSettings
from core.topics import ServiceName, Topic

ROOT = Path(__file__).resolve().parents[1]
CDB = Path(sys.executable).parent / "cdb"

_SETTING_VARS = [name.upper() for name in ServiceSettings.model_fields if name != "service"]
CLEAN_ENV: dict[str, str | None] = {
    var: None
    for var in _SETTING_VARS + [f"{s.value.upper()}_{v}" for s in ServiceName for v in _SETTING_VARS]
}
"""Unset every setting variable (the test process's environment must not leak in)."""


def _cdb(*args: str, **env: str) -> Result:
    return CliRunner().invoke(app, list(args), env={**CLEAN_ENV, "COLUMNS": "250", **env})


def _flags_json(*args: str, **env: str) -> dict[str, dict[str, Any]]:
    result = _cdb("flags", "--json", *args, **env)
    assert result.exit_code == 0, result.output
    return {row["service"]: row for row in json.loads(result.stdout)}


def test_cdb_flags__json_lists_every_service_with_defaults() -> None:
    rows = _flags_json()
    assert list(rows) == [s.value for s in ServiceName]
    for row in rows.values():
        assert (row["path"], row["contract_profile"]) == ("legacy", "lenient")
        assert row["use_pydantic_contracts_source"] == "default"


def test_cdb_flags__json_shows_the_prefixed_variable_as_the_source() -> None:
    rows = _flags_json(USE_PYDANTIC_CONTRACTS="false", SIGNAL_USE_PYDANTIC_CONTRACTS="true")
    assert rows["signal"]["path"] == "pydantic"
    assert rows["signal"]["use_pydantic_contracts_source"] == "env SIGNAL_USE_PYDANTIC_CONTRACTS"
    assert rows["risk"]["path"] == "legacy"
    assert rows["risk"]["use_pydantic_contracts_source"] == "env USE_PYDANTIC_CONTRACTS"


def test_cdb_flags__json_shows_the_env_file_as_the_source(tmp_path: Path) -> None:
    env_file = tmp_path / "flags.env"
    env_file.write_text("USE_PYDANTIC_CONTRACTS=true\nRISK_CONTRACT_PROFILE=strict\n", encoding="utf-8")
    rows = _flags_json("--env-file", str(env_file), EXECUTION_USE_PYDANTIC_CONTRACTS="no")
    assert rows["risk"]["contract_profile"] == "strict"
    assert str(env_file) in rows["risk"]["contract_profile_source"]
    assert rows["ws"]["path"] == "pydantic"
    assert rows["execution"]["path"] == "legacy"
    assert rows["execution"]["use_pydantic_contracts_source"] == "env EXECUTION_USE_PYDANTIC_CONTRACTS"


def test_cdb_flags__json_redacts_passwords() -> None:
    rows = _flags_json(REDIS_URL="redis://u:s3cret@127.0.0.1:6379/0")
    assert rows["ws"]["redis_url"] == "redis://u:***@127.0.0.1:6379/0"
    assert "s3cret" not in json.dumps(rows)


def test_cdb_flags__table_shows_value_and_source_of_each_flag() -> None:
    result = _cdb("flags", USE_PYDANTIC_CONTRACTS="1", SIGNAL_CONTRACT_PROFILE="strict")
    assert result.exit_code == 0, result.output
    signal_line = next(line for line in result.stdout.splitlines() if " signal " in line)
    assert "strict (env SIGNAL_CONTRACT_PROFILE)" in signal_line
    assert "True (env USE_PYDANTIC_CONTRACTS)" in signal_line
    ws_line = next(line for line in result.stdout.splitlines() if " ws " in line)
    assert "lenient (default)" in ws_line


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"USE_PYDANTIC_CONTRACTS": "ture"}, "USE_PYDANTIC_CONTRACTS"),
        ({"SIGNAL_USE_PYDANTIC_CONTRACTS": "enabled"}, "SIGNAL_USE_PYDANTIC_CONTRACTS"),
        ({"CONTRACT_PROFILE": "strikt"}, "CONTRACT_PROFILE"),
    ],
)
def test_cdb_flags__bad_value_exits_non_zero_naming_the_variable(env: dict[str, str], variable: str) -> None:
    result = _cdb("flags", **env)
    assert result.exit_code != 0
    assert f"{variable}=" in result.stderr
    assert "Traceback" not in result.output


def test_cdb_flags__bad_bool_lists_the_accepted_values() -> None:
    result = _cdb("flags", USE_PYDANTIC_CONTRACTS="2")
    assert result.exit_code != 0
    assert all(word in result.stderr for word in BOOL_WORDS)


def test_cdb_flags__bad_value_in_env_file_names_variable_and_file(tmp_path: Path) -> None:
    env_file = tmp_path / "flags.env"
    env_file.write_text("RISK_USE_PYDANTIC_CONTRACTS=ture\n", encoding="utf-8")
    result = _cdb("flags", "--env-file", str(env_file))
    assert result.exit_code != 0
    assert "RISK_USE_PYDANTIC_CONTRACTS" in result.stderr
    assert str(env_file) in result.stderr.replace("\n", "")


def test_cdb_flags__missing_env_file_exits_non_zero_without_traceback(tmp_path: Path) -> None:
    result = _cdb("flags", "--env-file", str(tmp_path / "nope.env"))
    assert result.exit_code != 0
    assert "nope.env" in result.stderr.replace("\n", "")
    assert "Traceback" not in result.output


def test_cdb_demo__json_rows_cover_every_topic_and_path() -> None:
    result = _cdb("demo", "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert {r["topic"] for r in rows} == {t.value for t in Topic}
    assert len(rows) == len(Topic) * 2 * 3
    for row in rows:
        refused = row["producer"] == "legacy" and row["consumer"] == "pydantic/strict"
        assert row["outcome"].startswith("refused: missing") if refused else row["outcome"] == "ok"


@pytest.mark.integration
def test_cdb_demo__real_subprocess_table_shows_every_topic_and_strict_refusing_legacy() -> None:
    env = {k: v for k, v in os.environ.items() if k not in CLEAN_ENV}
    proc = subprocess.run(
        [str(CDB), "demo"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**env, "COLUMNS": "250"},
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    rows = [
        [cell.strip() for cell in line.split("│")[1:-1]] for line in proc.stdout.splitlines() if "│" in line
    ]
    assert {r[0] for r in rows} == {t.value for t in Topic}
    for topic, producer, consumer, _size, outcome, _defaulted in rows:
        if producer == "legacy" and consumer == "pydantic/strict":
            assert outcome.startswith("refused: missing api_version"), (topic, outcome)
        else:
            assert outcome == "ok", (topic, producer, consumer, outcome)
    assert len(rows) == 24
