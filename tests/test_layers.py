"""The package layers: every top-level package imports on its own, and `cdb --help` stays light.

import-linter (scripts/test.sh) holds the direction of every import; these tests hold what it
cannot see: that each package imports in a fresh interpreter (no import cycle that only an
earlier import hides) and what the command line pulls in at start-up.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("core", "migration", "services", "harness", "cdb", "bench")


def _fresh(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )


def test_layers__every_top_level_package_is_in_the_import_linter_contract() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["importlinter"]
    layered = {name.strip() for layer in config["contracts"][0]["layers"] for name in layer.split("|")}
    assert set(config["root_packages"]) == layered == set(PACKAGES)


@pytest.mark.parametrize("package", PACKAGES)
def test_layers__package_imports_in_a_fresh_interpreter(package: str) -> None:
    result = _fresh(f"import {package}")
    assert result.returncode == 0, result.stderr


MIGRATION_MODULES = ("migration", "migration.install", "migration.lenient", "migration.shadow")


@pytest.mark.parametrize("package", MIGRATION_MODULES)
def test_layers__the_migration_imports_first_without_a_cycle(package: str) -> None:
    """The seed's `import migration` failed with a circular ImportError unless core.codec came first."""
    result = _fresh(
        f"import {package}; import core.codec; print([m.value for m in core.codec.available_modes()])"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['strict']"  # importing is not installing: only install() registers


def test_layers__cli_start_up_loads_neither_websockets_nor_protobuf() -> None:
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from cdb.cli.main import app\n"
        "result = CliRunner().invoke(app, ['--help'])\n"
        "assert result.exit_code == 0, result.output\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('websockets', 'google')))\n"
    )
    result = _fresh(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_layers__install_registers_legacy_lenient_and_shadow_once() -> None:
    code = (
        "import core.codec as c\n"
        "before = [m.value for m in c.available_modes()]\n"
        "from cdb.plugins import install_plugins\n"
        "install_plugins(); install_plugins()\n"
        "print(before, [m.value for m in c.available_modes()])\n"
    )
    result = _fresh(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['strict'] ['legacy', 'lenient', 'strict', 'shadow']"


def _package_inits() -> list[str]:
    found = []
    for top in PACKAGES:
        for init in sorted((ROOT / top).rglob("__init__.py")):
            rel = init.parent.relative_to(ROOT)
            if "proto" not in rel.parts:
                found.append(".".join(rel.parts))
    return found


def _isort_key(name: str) -> tuple[int, str]:
    kind = 0 if name.isupper() else 1 if name[:1].isupper() else 2
    return kind, name


@pytest.mark.parametrize("package", _package_inits())
def test_layers__package_surface_is_a_sorted_all_of_names_that_resolve(package: str) -> None:
    module = importlib.import_module(package)
    names = getattr(module, "__all__", None)

    assert isinstance(names, list), f"{package} declares no __all__"
    assert names == sorted(names, key=_isort_key)  # ruff's RUF022 order: CONSTANTS, Classes, functions
    assert [n for n in names if not hasattr(module, n)] == []
