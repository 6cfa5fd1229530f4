"""The Redis connection options: declared once, read through the services' settings."""

from __future__ import annotations

import pytest
import typer
from typer.main import get_command
from typer.testing import CliRunner

from cdb.cli.main import app
from cdb.cli.options import DEFAULT_REDIS_URL, RedisOptions
from core.errors import ConfigError
from core.redis.modes import RedisMode

FIVE = {"--redis-url", "--prefix", "--redis-mode", "--redis-sentinels", "--redis-sentinel-master"}
COMMANDS = [
    ("status",),
    ("health",),
    ("dlq", "list"),
    ("dlq", "show"),
    ("dlq", "replay"),
    ("dlq", "review"),
    ("cutover", "check"),
    ("cutover", "apply"),
]


def _options(path: tuple[str, ...]) -> set[str]:
    command = get_command(app)
    ctx = typer.Context(command)
    for name in path:
        command = command.get_command(ctx, name)  # type: ignore[attr-defined]
    return {opt for param in command.params for opt in param.opts}


@pytest.mark.parametrize("path", COMMANDS, ids=" ".join)
def test_redis_options__every_pipeline_command_has_the_same_five(path: tuple[str, ...]) -> None:
    assert _options(path) >= FIVE


def test_redis_options__variables_are_read_like_a_services(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://10.0.0.9:6380/2")
    monkeypatch.setenv("KEY_PREFIX", "blue:")
    monkeypatch.setenv("REDIS_MODE", "Cluster")

    options = RedisOptions()

    assert (options.target().url, options.target().mode, options.prefix) == (
        "redis://10.0.0.9:6380/2",
        RedisMode.CLUSTER,
        "blue:",
    )


def test_redis_options__an_option_beats_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEY_PREFIX", "blue:")
    assert RedisOptions(prefix="green:").prefix == "green:"
    assert RedisOptions().target().url == DEFAULT_REDIS_URL


def test_redis_options__an_unrelated_bad_flag_does_not_stop_an_operator_command(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("USE_PYDANTIC_CONTRACTS", "maybe")
    assert RedisOptions(prefix="p:").prefix == "p:"


def test_redis_options__bad_mode_variable_is_refused_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_MODE", "clustered")
    with pytest.raises(ConfigError, match=r"REDIS_MODE \(--redis-mode\)='clustered'"):
        RedisOptions().target()

    result = CliRunner().invoke(app, ["status"])

    assert result.exit_code == 2
    assert "REDIS_MODE (--redis-mode)='clustered'" in result.output
