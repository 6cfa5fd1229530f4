"""``cdb dashboard``: the live migration page in a browser (read-only).

Served by uvicorn on 127.0.0.1 by default. Any other address needs ``--token``
(env ``CDB_DASHBOARD_TOKEN``): the page shows instance names, flags and dead-letter
payload previews, which are not for everyone on the network. Open
``http://HOST:PORT/?token=TOKEN``; scripts send ``Authorization: Bearer TOKEN``.
"""

from __future__ import annotations

import ipaddress
from typing import Annotated

import typer

from cdb.cli.options import (
    DEFAULT_REDIS_URL,
    Prefix,
    RedisModeOption,
    RedisUrl,
    SentinelMaster,
    Sentinels,
    cli_target,
)
from cdb.cli.output import console, exit_with
from core.errors import CdbError, ConfigError

__all__ = ["dashboard", "needs_token"]


def needs_token(host: str) -> bool:
    """True unless ``host`` is a loopback address (or ``localhost``)."""
    if host == "localhost":
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return True  # a host name: it may resolve to anything


def dashboard(
    redis_url: RedisUrl = DEFAULT_REDIS_URL,
    prefix: Prefix = "",
    host: Annotated[
        str, typer.Option(help="Address to bind; not loopback: --token is required.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to serve on.", min=1, max=65535)] = 8765,
    token: Annotated[
        str,
        typer.Option(envvar="CDB_DASHBOARD_TOKEN", help="Required on every request (?token= or Bearer)."),
    ] = "",
    interval: Annotated[float, typer.Option(help="Seconds between two reads of Redis.", min=0.2)] = 1.0,
    redis_mode: RedisModeOption = "",
    sentinels: Sentinels = "",
    sentinel_master: SentinelMaster = "",
) -> None:
    """Serve the live migration page: instances, traffic shapes, errors, lag, cutover verdict, flips."""
    import uvicorn

    from cdb.cli.dashboard_app import Sampler, create_app

    try:
        if needs_token(host) and not token:
            raise ConfigError(
                "--host", host, ["127.0.0.1", "::1", "any address with --token"], "not loopback"
            )
        target = cli_target(redis_url, redis_mode, sentinels, sentinel_master)
    except CdbError as exc:
        exit_with(exc)
    app = create_app(Sampler(target, prefix, interval_s=interval), token=token or None)
    shown = f"[{host}]" if ":" in host else host
    console.print(f"cdb dashboard on http://{shown}:{port}/{'?token=…' if token else ''} (Ctrl-C to stop)")
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
