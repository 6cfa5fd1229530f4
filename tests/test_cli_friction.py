"""Small operator fixes: ``cdb --version``, ``cdb flags --env-dir / --service``, the backup ignore."""

from __future__ import annotations

import json
import subprocess
from importlib.metadata import version
from pathlib import Path

from tests.ops_helpers import CDB, ROOT, cdb


def test_cdb_version__prints_the_installed_version() -> None:
    result = cdb("--version")
    assert result.exit_code == 0
    assert result.stdout.strip() == f"cdb-contracts {version('cdb-contracts')}"


def test_cdb_flags__env_dir_resolves_each_service_from_its_own_file(tmp_path: Path) -> None:
    (tmp_path / "signal.env").write_text("USE_PYDANTIC_CONTRACTS=true\nCONTRACT_PROFILE=strict\n")
    (tmp_path / "risk.env").write_text("USE_PYDANTIC_CONTRACTS=false\n")
    (tmp_path / "ws.env").write_text("# nothing set: defaults\n")
    (tmp_path / "execution.env").write_text("USE_PYDANTIC_CONTRACTS=yes\n")
    result = cdb("flags", "--env-dir", str(tmp_path), "--json")
    assert result.exit_code == 0, result.output
    rows = {r["service"]: r for r in json.loads(result.stdout)}
    assert (rows["signal"]["path"], rows["signal"]["contract_profile"]) == ("pydantic", "strict")
    assert rows["risk"]["path"] == "legacy"  # not signal's file applied to risk
    assert rows["ws"]["use_pydantic_contracts_source"] == "default"
    assert rows["execution"]["path"] == "pydantic"


def test_cdb_flags__service_shows_one_row(tmp_path: Path) -> None:
    env = tmp_path / "signal.env"
    env.write_text("USE_PYDANTIC_CONTRACTS=true\n")
    result = cdb("flags", "--service", "signal", "--env-file", str(env), "--json")
    assert result.exit_code == 0, result.output
    [row] = json.loads(result.stdout)
    assert (row["service"], row["path"]) == ("signal", "pydantic")
    assert row["use_pydantic_contracts_source"].startswith("file ")


def test_cdb_flags__env_file_and_env_dir_together_are_refused(tmp_path: Path) -> None:
    result = cdb("flags", "--env-dir", str(tmp_path), "--env-file", str(tmp_path / "x.env"))
    assert result.exit_code == 2
    assert "--env-dir" in result.output


def test_gitignore__cutover_backups_are_not_committed(tmp_path: Path) -> None:
    done = subprocess.run(
        ["git", "check-ignore", "-q", "env/.cutover-backup/20260101T000000Z/signal.env"],
        cwd=ROOT,
        check=False,
    )
    assert done.returncode == 0
    assert CDB.exists()
