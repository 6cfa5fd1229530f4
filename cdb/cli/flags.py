"""``cdb flags``: the resolved migration flags of every service and where each came from.

It checks every setting a service reads at start, as the service reads it
(:func:`services.config.load_start_config`): the flags and connections, the service's own
``WS_*`` / ``SIGNAL_*`` / ``RISK_*`` / ``EXECUTION_*`` settings and METRICS_PORT / METRICS_ADDR.
A value the service would refuse exits non-zero with the service's own one-line error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cdb.cli.output import console, exit_with, print_json, shown, table
from core.codec import codec_mode, mode_available
from core.errors import ConfigError
from core.settings import ServiceSettings, redact_url
from core.topics import ServiceName

_SHOWN = (
    "use_pydantic_contracts",
    "contract_profile",
    "contract_shadow",
    "redis_url",
    "database_url",
)


def flags(
    env_file: Annotated[
        Path | None,
        typer.Option("--env-file", help="Also read this env file (as docker compose would)."),
    ] = None,
    env_dir: Annotated[
        Path | None,
        typer.Option("--env-dir", help="Read each service's own <dir>/<service>.env (the compose layout)."),
    ] = None,
    service: Annotated[
        list[ServiceName] | None,
        typer.Option("--service", help="Only this service (repeatable); default: all four."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Show the path and profile each service would start with, and the source of every value.

    Every setting the service reads at start is checked (also WS_*, SIGNAL_*, RISK_*,
    EXECUTION_*, METRICS_PORT, METRICS_ADDR); one it would refuse exits non-zero with its error.
    ``--env-dir env`` resolves each service from its own file, as the containers do;
    ``--service signal --env-file env/signal.env`` shows one service from one file.
    """
    from services.config import load_start_config  # the service classes load on use, not at cdb start

    if env_file is not None and env_dir is not None:
        exit_with(ConfigError("--env-dir", str(env_dir), ["--env-file or --env-dir, not both"]))
    rows = []
    for svc in service or list(ServiceName):
        own = env_dir / f"{svc.value}.env" if env_dir is not None else env_file
        try:
            settings = load_start_config(svc, env_file=own).settings
        except ConfigError as exc:
            exit_with(exc)
        _, origins = ServiceSettings.resolve(svc, env_file=own)
        row = {
            "service": svc.value,
            "path": "pydantic" if settings.use_pydantic_contracts else "legacy",
            "mode": _mode(settings),
        }
        for name in _SHOWN:
            value = getattr(settings, name)
            if name.endswith("_url"):
                value = redact_url(value) or "-"
            row[name] = value.value if hasattr(value, "value") else value
            row[f"{name}_source"] = origins[name]
        rows.append(row)
    if as_json:
        print_json(rows)
        return
    columns = [
        "service",
        "path",
        "mode",
        "USE_PYDANTIC_CONTRACTS",
        "CONTRACT_PROFILE",
        "CONTRACT_SHADOW",
        "REDIS_URL",
    ]
    body = [
        [
            r["service"],
            r["path"],
            r["mode"],
            f"{r['use_pydantic_contracts']} ({r['use_pydantic_contracts_source']})",
            f"{r['contract_profile']} ({r['contract_profile_source']})",
            f"{r['contract_shadow']} ({r['contract_shadow_source']})",
            f"{r['redis_url']} ({r['redis_url_source']})",
        ]
        for r in rows
    ]
    console.print(table("Resolved flags per service", columns, [[shown(c) for c in r] for r in body]))


def _mode(settings: ServiceSettings) -> str:
    """The one codec mode the service runs (:func:`core.codec.codec_mode`), flagged when this
    installation cannot build it (the service would refuse to start)."""
    mode = codec_mode(settings)
    return mode.value if mode_available(mode) else f"{mode.value} (not installed)"
