"""The week-4 deletion, rehearsed: a copy of the tree without the migration plug-in still works.

The copy loses exactly what docs/migration-runbook.md lists (the ``git rm`` line and the
one marked line of cdb/plugins.py). In it, the strict-path tests pass, and ``cdb --help``,
``cdb flags`` and ``cdb run --all-pydantic --profile strict`` (embedded fakeredis) succeed
without showing a path or profile that no longer exists.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RUNBOOK = ROOT / "docs" / "migration-runbook.md"
INSTALL_MARK = "week 4: delete this line"
FLAG_VARIABLES = (
    "USE_PYDANTIC_CONTRACTS",
    "CONTRACT_PROFILE",
    "CONTRACT_SHADOW",
    "REDIS_URL",
    "DATABASE_URL",
)
GONE_WORDS = re.compile(r"\b(legacy|lenient)\b", re.IGNORECASE)

# The project is installed in editable mode: its import finder would find the deleted
# migration/ in the real tree. The copy's interpreters drop that finder first.
_SITECUSTOMIZE = """\
import sys
sys.meta_path[:] = [f for f in sys.meta_path if "__editable__" not in getattr(f, "__module__", "")]
sys.path_hooks[:] = [h for h in sys.path_hooks if "__editable__" not in getattr(h, "__module__", "")]
sys.path_importer_cache.clear()
"""

pytestmark = pytest.mark.slow


def runbook_deletion() -> tuple[list[str], str]:
    """The paths the runbook's ``git rm -r`` line removes, and the file holding the install line."""
    text = RUNBOOK.read_text(encoding="utf-8")
    [command] = re.findall(r"^\s*git rm -r (.+)$", text, re.MULTILINE)
    [line_file] = re.findall(r"the one line marked `" + INSTALL_MARK + r"` in `([^`]+)`", text)
    return command.split(), line_file


def delete_migration(root: Path) -> list[str]:
    """Apply the runbook's deletion to the tree at ``root``; returns what it removed."""
    paths, line_file = runbook_deletion()
    for rel in paths:
        target = root / rel.rstrip("/")
        assert target.exists(), f"the runbook deletes {rel}, which does not exist"
        if target.is_dir():
            shutil.rmtree(target)
        else:
            target.unlink()
    holder = root / line_file
    lines = holder.read_text(encoding="utf-8").splitlines(keepends=True)
    marked = [line for line in lines if INSTALL_MARK in line]
    assert len(marked) == 1, f"{line_file} must hold exactly one line marked {INSTALL_MARK!r}"
    holder.write_text("".join(line for line in lines if line not in marked), encoding="utf-8")
    return [*paths, f"{line_file}: {marked[0].strip()}"]


@pytest.fixture(scope="module")
def week4(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A copy of the tree after the deletion, and the environment that runs it (not the original)."""
    base = tmp_path_factory.mktemp("week4")
    copy = base / "tree"
    shutil.copytree(
        ROOT,
        copy,
        ignore=shutil.ignore_patterns(
            ".git", ".venv", "__pycache__", "*.egg-info", ".*_cache", "var", "BENCHMARKS.*"
        ),
    )
    delete_migration(copy)
    boot = base / "boot"
    boot.mkdir()
    (boot / "sitecustomize.py").write_text(_SITECUSTOMIZE, encoding="utf-8")
    env = {
        k: v
        for k, v in os.environ.items()
        if not any(k == var or k.endswith(f"_{var}") for var in FLAG_VARIABLES)
        and not k.startswith("PYTEST_")
    }
    env["PYTHONPATH"] = os.pathsep.join([str(boot), str(copy)])
    return copy, env


def _run(week4: tuple[Path, dict[str, str]], *args: str) -> subprocess.CompletedProcess[str]:
    copy, env = week4
    return subprocess.run(
        list(args), cwd=copy, env=env, capture_output=True, text=True, timeout=600, check=False
    )


def _cdb(week4: tuple[Path, dict[str, str]], *args: str) -> subprocess.CompletedProcess[str]:
    return _run(week4, sys.executable, "-c", "from cdb.cli.main import main; main()", *args)


def test_week4__the_runbook_names_the_plug_in_and_one_line() -> None:
    paths, line_file = runbook_deletion()
    assert paths == ["migration/", "cdb/cli/cutover.py"]
    assert line_file == "cdb/plugins.py"


def test_week4__the_copy_has_no_migration_and_runs_its_own_code(week4: tuple[Path, dict[str, str]]) -> None:
    copy, _ = week4
    result = _run(
        week4, sys.executable, "-c", "import cdb.plugins, core; print(core.__file__); import migration"
    )
    assert "No module named 'migration'" in result.stderr
    assert result.stdout.strip() == str(copy / "core" / "__init__.py")


def test_week4__strict_path_tests_pass_in_the_copy(week4: tuple[Path, dict[str, str]]) -> None:
    copy, _ = week4
    marked = sorted(
        p.relative_to(copy).as_posix()
        for p in (copy / "tests").glob("test_*.py")
        if "pytest.mark.strict_path" in p.read_text(encoding="utf-8")
    )
    assert len(marked) >= 6
    result = _run(
        week4,
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:randomly",
        "-p",
        "no:cacheprovider",
        "-m",
        "strict_path",
        *marked,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert re.search(r"\d+ passed", result.stdout)
    assert "skipped" not in result.stdout.splitlines()[-1]


def test_week4__cdb_help_lists_no_migration_command(week4: tuple[Path, dict[str, str]]) -> None:
    result = _cdb(week4, "--help")
    assert result.returncode == 0, result.stderr
    assert "flags" in result.stdout
    assert "cutover" not in result.stdout
    assert not GONE_WORDS.search(result.stdout)


def test_week4__cdb_flags_defaults_to_pydantic_strict(week4: tuple[Path, dict[str, str]]) -> None:
    table = _cdb(week4, "flags")
    rows = json.loads(_cdb(week4, "flags", "--json").stdout)

    assert table.returncode == 0, table.stderr
    assert not GONE_WORDS.search(table.stdout)
    assert {(r["path"], r["mode"], r["use_pydantic_contracts"], r["contract_profile"]) for r in rows} == {
        ("pydantic", "strict", True, "strict")
    }


def test_week4__cdb_flags_refuses_nothing_but_shows_a_deleted_mode_as_not_installed(
    week4: tuple[Path, dict[str, str]],
) -> None:
    copy, env = week4
    result = subprocess.run(
        [sys.executable, "-c", "from cdb.cli.main import main; main()", "flags", "--json"],
        cwd=copy,
        env={**env, "USE_PYDANTIC_CONTRACTS": "false"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert {r["mode"] for r in json.loads(result.stdout)} == {"legacy (not installed)"}


def test_week4__cdb_run_all_pydantic_strict_on_embedded_fakeredis(week4: tuple[Path, dict[str, str]]) -> None:
    """Same streams and dead letters as the tree with the migration installed: deleting it
    changes nothing on the strict path."""
    args = ("run", "--all-pydantic", "--profile", "strict")
    result = _cdb(week4, *args)
    after = json.loads(_cdb(week4, *args, "--json").stdout)
    _, env = week4
    before_env = {k: v for k, v in env.items() if k != "PYTHONPATH"}
    before = json.loads(
        subprocess.run(
            [sys.executable, "-c", "from cdb.cli.main import main; main()", *args, "--json"],
            cwd=ROOT,
            env=before_env,
            capture_output=True,
            text=True,
            timeout=600,
            check=True,
        ).stdout
    )

    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "embedded fakeredis" in result.stdout
    assert not GONE_WORDS.search(result.stdout)
    assert {(s["path"], s["profile"]) for s in after["services"].values()} == {("pydantic", "strict")}
    assert (after["streams"], after["dead_letters"]) == (before["streams"], before["dead_letters"])
    assert after["streams"]["order_results"] > 0


def test_week4__dashboard_serves_without_the_cutover_verdict(week4: tuple[Path, dict[str, str]]) -> None:
    probe = (
        "import json; from cdb.cli.dashboard_app import Sampler; from core.redis.modes import RedisTarget; "
        "s = Sampler(RedisTarget.of('redis://127.0.0.1:1/0'), 'p:'); "
        "print(json.dumps({'check': s.cutover is None, 'state': s.state()['cutover_installed']}))"
    )
    result = _run(week4, sys.executable, "-c", probe)

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"check": True, "state": False}


def test_week4__dlq_review_says_there_is_no_cutover_to_review(week4: tuple[Path, dict[str, str]]) -> None:
    result = _cdb(week4, "dlq", "review", "--redis-url", "redis://127.0.0.1:1/0")

    assert result.returncode != 0
    assert "migration plug-in is not installed" in result.stderr
    assert "Traceback" not in result.stderr


def test_week4__retiring_a_version_edits_and_restores_env_files_without_the_plug_in(
    week4: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    for name in ("ws", "signal", "risk", "execution"):
        (tmp_path / f"{name}.env").write_bytes(b"CONTRACT_PROFILE=strict\n")
    args = ("--topic", "signals", "--version", "v1.0", "--env-dir", str(tmp_path))
    applied = _cdb(
        week4,
        "versions",
        "retire-apply",
        *args,
        "--force",
        "--reason",
        "t",
        "--redis-url",
        "redis://127.0.0.1:1/0",
    )
    assert applied.returncode == 0, applied.stderr
    assert (tmp_path / "risk.env").read_bytes() == b"CONTRACT_PROFILE=strict\nRETIRED_VERSIONS_SIGNALS=v1.0\n"
    assert b"PRODUCE_VERSION_SIGNALS=v2.0" in (tmp_path / "signal.env").read_bytes()
    rolled = _cdb(week4, "versions", "retire-rollback", "--env-dir", str(tmp_path))
    assert rolled.returncode == 0, rolled.stderr
    assert {p.read_bytes() for p in tmp_path.glob("*.env")} == {b"CONTRACT_PROFILE=strict\n"}
