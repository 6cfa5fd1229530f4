"""``cdb flags`` checks every setting a service reads at start, as ``cdb service`` reads it.

Not only the flags (USE_PYDANTIC_CONTRACTS, ...) but the service's own settings (``WS_*``,
``SIGNAL_*``, ``RISK_*``, ``EXECUTION_*``) and METRICS_PORT / METRICS_ADDR: a value in an env
file that the service would refuse makes ``cdb flags`` exit non-zero with the very line
``cdb service NAME --env-file F`` prints, and the environment wins over the file for these
exactly as for the flags. ``cdb service`` runs as a real subprocess pointed at a Redis that
does not answer: a service that accepted its settings fails on the connection instead.
"""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from cdb.cli import app
from core.settings import ServiceSettings
from core.topics import ServiceName
from services.execution.paper import VenueParams
from services.risk.limits import RiskLimits
from services.signal.strategy import SignalParams
from services.ws.sources import WsSourceSettings
from tests.ops_helpers import CDB, ROOT

pytestmark = pytest.mark.integration

_FLAG_VARS = [name.upper() for name in ServiceSettings.model_fields if name != "service"]
_OWN_VARS = [
    f"{cls.model_config.get('env_prefix', '')}{name}".upper()
    for cls in (WsSourceSettings, SignalParams, RiskLimits, VenueParams)
    for name in cls.model_fields
]
CLEAN_ENV: dict[str, str | None] = {
    var: None
    for var in [
        *_FLAG_VARS,
        *[f"{s.value.upper()}_{v}" for s in ServiceName for v in _FLAG_VARS],
        *_OWN_VARS,
        "METRICS_PORT",
        "METRICS_ADDR",
        "FLAGS_FILE",
        "CDB_TRACEBACK",
    ]
}
"""Unset every variable a service reads: the test process's environment must not leak in."""

BAD_VALUES = [
    pytest.param(ServiceName.SIGNAL, "SIGNAL_WINDOW", "1", id="SIGNAL_WINDOW"),
    pytest.param(ServiceName.RISK, "RISK_MAX_ORDER_NOTIONAL", "-5", id="RISK_MAX_ORDER_NOTIONAL"),
    pytest.param(ServiceName.EXECUTION, "EXECUTION_FEE_BPS", "-1", id="EXECUTION_FEE_BPS"),
    pytest.param(ServiceName.WS, "WS_SOURCE", "foo", id="WS_SOURCE"),
    pytest.param(ServiceName.WS, "METRICS_PORT", "70000", id="METRICS_PORT"),
    pytest.param(ServiceName.SIGNAL, "METRICS_ADDR", "notanip", id="METRICS_ADDR"),
]
"""One value each service refuses at start, per kind of setting."""


def _dead_redis_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"redis://127.0.0.1:{sock.getsockname()[1]}/0"  # closed when the block ends


def _env_file(tmp_path: Path, service: ServiceName, text: str) -> Path:
    path = tmp_path / f"{service.value}.env"
    path.write_text(text, encoding="utf-8")
    return path


def _error_line(stderr: str) -> str:
    """The one error line (a service's JSON log lines aside)."""
    lines = [line for line in stderr.splitlines() if line.strip() and not line.startswith("{")]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: "), stderr
    return lines[0]


def _service(service: ServiceName, env_file: Path, **env: str) -> str:
    """What ``cdb service NAME --env-file F`` prints on stderr before it exits (non-zero)."""
    base = {k: v for k, v in os.environ.items() if k not in CLEAN_ENV}
    proc = subprocess.run(
        [str(CDB), "service", service.value, "--env-file", str(env_file)],
        capture_output=True,
        text=True,
        timeout=90,
        cwd=ROOT,
        env={**base, "COLUMNS": "80", "REDIS_URL": _dead_redis_url(), **env},
        check=False,
    )
    assert proc.returncode != 0, proc.stderr
    return _error_line(proc.stderr)


def _flags(service: ServiceName, env_file: Path, **env: str) -> Result:
    return CliRunner().invoke(
        app,
        ["flags", "--service", service.value, "--env-file", str(env_file)],
        env={**CLEAN_ENV, "COLUMNS": "250", **env},
    )


@pytest.mark.parametrize(("service", "variable", "value"), BAD_VALUES)
def test_cdb_flags__refuses_a_file_value_the_service_refuses_with_the_services_own_line(
    service: ServiceName, variable: str, value: str, tmp_path: Path
) -> None:
    """``cdb flags`` run before a recreate catches what would stop the service, word for word."""
    env_file = _env_file(tmp_path, service, f"USE_PYDANTIC_CONTRACTS=true\n{variable}={value}\n")
    flags = _flags(service, env_file)
    assert flags.exit_code != 0, flags.output
    line = _error_line(flags.stderr)
    assert line.startswith(f"error: {variable}"), line
    assert f"={value!r} is not accepted" in line
    assert _service(service, env_file) == line


@pytest.mark.parametrize(
    ("service", "variable", "bad", "good"),
    [
        pytest.param(ServiceName.SIGNAL, "USE_PYDANTIC_CONTRACTS", "ture", "true", id="a flag"),
        pytest.param(ServiceName.SIGNAL, "SIGNAL_WINDOW", "1", "5", id="SIGNAL_WINDOW"),
        pytest.param(ServiceName.WS, "WS_SOURCE", "foo", "synthetic", id="WS_SOURCE"),
        pytest.param(ServiceName.RISK, "METRICS_PORT", "70000", "0", id="METRICS_PORT"),
    ],
)
def test_service_settings__the_environment_wins_over_the_file_as_for_the_flags(
    service: ServiceName, variable: str, bad: str, good: str, tmp_path: Path
) -> None:
    """Whichever kind of setting: a variable set in the environment hides the file's line (a bad
    one in the file goes unread), and a bad one in the environment is refused over a good line."""
    hidden = _env_file(tmp_path, service, f"{variable}={bad}\n")
    assert _flags(service, hidden, **{variable: good}).exit_code == 0
    line = _service(service, hidden, **{variable: good})
    assert "not reachable" in line, line  # it got past its settings, to the (dead) Redis

    overridden = _env_file(tmp_path, service, f"{variable}={good}\n")
    flags = _flags(service, overridden, **{variable: bad})
    assert flags.exit_code != 0
    line = _error_line(flags.stderr)
    assert line.startswith(f"error: {variable}={bad!r} is not accepted"), line  # the variable, not the file
    assert _service(service, overridden, **{variable: bad}) == line


def test_cdb_flags__a_file_line_is_named_with_its_file(tmp_path: Path) -> None:
    """A service setting refused from an env file is named like a flag is: ``KEY (in F)``."""
    env_file = _env_file(tmp_path, ServiceName.SIGNAL, "SIGNAL_WINDOW=1\n")
    line = _error_line(_flags(ServiceName.SIGNAL, env_file).stderr)
    assert line.startswith(f"error: SIGNAL_WINDOW (in {env_file})='1' is not accepted"), line


def test_cdb_flags__checks_only_the_settings_of_the_services_it_checks(tmp_path: Path) -> None:
    """Signal does not read ``WS_*``: a bad ws source in signal's file stops neither signal nor
    ``cdb flags --service signal``; checking ws from that file refuses it."""
    env_file = _env_file(tmp_path, ServiceName.SIGNAL, "WS_SOURCE=foo\n")
    assert _flags(ServiceName.SIGNAL, env_file).exit_code == 0
    assert _flags(ServiceName.WS, env_file).exit_code != 0


def test_cdb_flags__variables_no_service_reads_are_still_allowed(tmp_path: Path) -> None:
    """An env file may hold anything else (compose files share one; a typo is not an error here)."""
    env_file = _env_file(
        tmp_path, ServiceName.SIGNAL, "SIGNAL_NO_SUCH_SETTING=x\nWS_OTHER=1\nMETRICS_PATH=/m\nFOO=bar\n"
    )
    for service in ServiceName:
        result = _flags(service, env_file)
        assert result.exit_code == 0, result.output


@pytest.mark.parametrize("args", [["--env-dir", "env"], ["--env-file", "flags.env.example"]])
def test_cdb_flags__the_repositorys_env_files_pass(args: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """What the containers start from (env/<service>.env), and the example that documents every
    variable, are accepted by the full check of all four services."""
    monkeypatch.chdir(ROOT)
    result = CliRunner().invoke(app, ["flags", *args], env=CLEAN_ENV)
    assert result.exit_code == 0, result.output
