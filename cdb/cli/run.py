"""``cdb run``: the main job; the four services in one process on the bundled trades."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from cdb.cli.interrupt import SIGTERM_EXIT, StoppedBySigtermError, interruptible
from cdb.cli.output import console, exit_with, print_json, shown, table
from cdb.cli.run_cleanup import Leftovers, count_keys, remove_file, remove_keys
from core.errors import CdbError, ConfigError
from core.metrics_http import MetricsTarget, metrics_target, serve_metrics
from core.settings import ServiceSettings, redact_url
from core.topics import Profile, ServiceName, Topic
from services.pipeline_control import PipelineHook
from services.ws.replay import BUNDLED_TRADES

_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def _log_level(value: str) -> str:
    """``--log-level`` as given, if logging knows it (any case); else a usage error (exit 2)."""
    if not isinstance(logging.getLevelName(value.upper()), int):
        exit_with(ConfigError("--log-level", value, _LOG_LEVELS))
    return value


def run(
    data: Annotated[Path, typer.Option(help="Trades to replay (CSV).")] = BUNDLED_TRADES,
    redis_url: Annotated[
        str | None, typer.Option(envvar="REDIS_URL", help="Redis to run on; empty: embedded fakeredis.")
    ] = None,
    database_url: Annotated[
        str | None, typer.Option(envvar="DATABASE_URL", help="PostgreSQL for order results; empty: SQLite.")
    ] = None,
    pydantic: Annotated[
        list[ServiceName] | None,
        typer.Option("--pydantic", help="Put this service on the Pydantic path (repeatable)."),
    ] = None,
    all_pydantic: Annotated[bool, typer.Option("--all-pydantic", help="Every service on Pydantic.")] = False,
    profile: Annotated[
        Profile | None, typer.Option(help="Contract profile for services on the Pydantic path.")
    ] = None,
    prefix: Annotated[
        str | None, typer.Option(help="Redis key prefix; default: a fresh one per run.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    keep: Annotated[
        bool,
        typer.Option(
            "--keep", help="Keep the run's Redis keys, PostgreSQL schema / SQLite file (default: removed)."
        ),
    ] = False,
    log_level: Annotated[
        str,
        typer.Option(
            help="JSON logs on stderr at this level (DEBUG, INFO, WARNING, ERROR).", callback=_log_level
        ),
    ] = "WARNING",
) -> None:
    """Replay the bundled trades through ws -> signal -> risk -> execution and summarise.

    Flags come from the environment (USE_PYDANTIC_CONTRACTS, SIGNAL_USE_PYDANTIC_CONTRACTS, ...)
    unless given here.
    """
    from core.logging import configure_logging

    configure_logging(log_level)
    if not data.is_file():
        exit_with(ConfigError("--data", str(data), ["a trades CSV file"], "no such file"))
    run_id = uuid.uuid4().hex[:8]
    key_prefix = prefix if prefix is not None else f"cdb-run-{run_id}:"
    try:
        settings = _settings(
            key_prefix,
            pydantic=pydantic or [],
            all_pydantic=all_pydantic,
            profile=profile,
            redis_url=redis_url,
            database_url=database_url,
        )
        target = metrics_target()  # METRICS_PORT: one /metrics for the four in-process services
        left = Leftovers(
            key_prefix,
            own_prefix=prefix is None,
            real_redis=bool(redis_url),
            schema=f"run_{run_id}" if database_url else None,
            sqlite=None if database_url else Path("var") / "runs" / f"{run_id}.sqlite3",
        )
        result = asyncio.run(
            interruptible(
                lambda term: _run(data, settings, run_id, term, target, left, keep=keep, quiet=as_json)
            )
        )
    except CdbError as exc:
        exit_with(exc)
    except StoppedBySigtermError:
        # The services were stopped (batches acked or left pending), the store and Redis closed.
        console.print(
            f"[bold red]interrupted by SIGTERM[/]: the run under key prefix {key_prefix!r} is incomplete"
        )
        if left.removed:
            console.print(f"removed: {'; '.join(left.removed)} (--keep keeps them)")
        raise SystemExit(SIGTERM_EXIT) from None
    if as_json:
        print_json({**_summary(result, settings), "leftovers": left.to_dict()})
        return
    _print_summary(result, settings, redis_url, key_prefix)
    if left.kept:
        console.print(
            f"kept: {'; '.join(left.kept)}" + ("" if keep else " (--prefix given: not ours to delete)")
        )
    if left.removed:
        console.print(f"removed: {'; '.join(left.removed)} (--keep keeps them)")
    if not result.quiescent:
        console.print("[bold red]the pipeline did not drain before the timeout[/]")
        raise SystemExit(1)


class _StopOnTerm(PipelineHook):
    """Ends the run at the next batch boundary once SIGTERM arrived."""

    def __init__(self, term: asyncio.Event) -> None:
        self.term = term

    async def after_batch(self, run: Any, published: int, total: int) -> None:
        """Stop publishing."""
        if self.term.is_set():
            raise StoppedBySigtermError

    async def before_drain(self, run: Any) -> None:
        """Do not wait for the drain."""
        if self.term.is_set():
            raise StoppedBySigtermError


def _settings(
    prefix: str,
    *,
    pydantic: list[ServiceName],
    all_pydantic: bool,
    profile: Profile | None,
    redis_url: str | None,
    database_url: str | None,
) -> dict[ServiceName, ServiceSettings]:
    out = {}
    for service in ServiceName:
        overrides: dict[str, Any] = {
            "key_prefix": prefix,
            "redis_url": redis_url,
            "database_url": database_url,
        }
        if all_pydantic or service in pydantic:
            overrides["use_pydantic_contracts"] = True
        if profile is not None:
            overrides["contract_profile"] = profile
        out[service] = ServiceSettings.load(service, overrides=overrides)
    _check_versions(out)
    return out


def _check_versions(settings: dict[ServiceName, ServiceSettings]) -> None:
    """Refuse, as the live gate refuses a producer, a version a consumer of this run cannot read.

    The four services start together, before any reports what it reads, so the gate at each
    start sees no consumer; this run knows all four settings, so it checks them first.
    """
    from core.codec import codec_for
    from core.versions.live import unreadable, versions_of

    reads = {s: versions_of(s, codec_for(settings[s]))[0] for s in ServiceName if s.consumes is not None}
    for producer in ServiceName:
        topic = producer.produces
        version = settings[producer].produce_version(topic)
        blockers = {
            f"{s.value}/{settings[s].instance}": reads[s][topic.value]
            for s in reads
            if s.consumes is topic and version not in reads[s][topic.value]
        }
        if blockers:
            raise unreadable(topic, version, blockers)


async def _run(
    data: Path,
    settings: dict[ServiceName, ServiceSettings],
    run_id: str,
    term: asyncio.Event,
    target: MetricsTarget,
    left: Leftovers,
    *,
    keep: bool,
    quiet: bool,
) -> Any:
    from services.execution.store import open_store
    from services.redis_connect import connect
    from services.ws.replay import load_trades

    trades = load_trades(data)
    execution = settings[ServiceName.EXECUTION]
    redis = await connect(execution.redis_url, execution)
    store = open_store(
        execution.database_url,
        sqlite_path=Path("var") / "runs" / f"{run_id}.sqlite3",
        schema=f"run_{run_id}",
    )
    try:
        # Before anything is published: a PostgreSQL that does not answer or refuses (no such
        # database, role) stops the run here with its one line. Left to execution's start, it
        # only stopped execution, and the run waited out the drain timeout (120 s) first.
        await store.migrate()
        result = await _pipeline(redis, settings, trades, store, term, target, quiet=quiet)
        await _clean_or_note(redis, store, left, keep=keep)
        return result
    except BaseException as exc:  # a failure, SIGTERM or Ctrl-C: it re-raises once cleaned
        if not keep:
            await _discard(redis, store, left, exc)
        raise
    finally:
        await store.close()
        await redis.aclose()
        if not keep and left.sqlite is not None and remove_file(left.sqlite):
            left.removed.append(f"SQLite file {left.sqlite}")


async def _pipeline(
    redis: Any,
    settings: dict[ServiceName, ServiceSettings],
    trades: Any,
    store: Any,
    term: asyncio.Event,
    target: MetricsTarget,
    *,
    quiet: bool,
) -> Any:
    from services.pipeline import run_pipeline

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=console,
        disable=quiet,
        transient=True,
    ) as bar:
        task = bar.add_task("publishing trades", total=len(trades))

        def progress(phase: str, done: int, total: int) -> None:
            if phase == "publishing":
                bar.update(task, completed=done, total=total)
            else:
                bar.update(task, description="draining signal -> risk -> execution")

        endpoint = serve_metrics(target)
        hooks: list[Any] = [ServeMetricsHook(endpoint)] if endpoint is not None else []
        try:
            hooks.append(_StopOnTerm(term))
            return await run_pipeline(redis, settings, trades, store, progress=progress, hooks=hooks)
        finally:
            if endpoint is not None:
                endpoint.close()


_DISCARD_S = 10.0
"""How long a failed run may spend removing what it wrote before it reports the failure."""


async def _discard(redis: Any, store: Any, left: Leftovers, failure: BaseException) -> None:
    """Remove what a run that did not finish wrote, as a finished one does: its keys (under a
    prefix of its own) and its schema, as far as Redis and PostgreSQL still answer. Never
    raises: the failure is what the user must see, not a second one while cleaning up."""
    from services.execution.store import StoreUnavailableError

    if left.own_prefix:
        try:
            removed = await asyncio.wait_for(remove_keys(redis, left.prefix), _DISCARD_S)
        except Exception:  # Redis gone too: the keys stay, the failure is what is reported
            removed = 0
        if left.real_redis and removed:
            left.removed.append(f"{removed} Redis keys under prefix {left.prefix!r}")
    # A PostgreSQL that could not be connected to has no schema of ours, or none it would drop now.
    if (
        left.schema is not None
        and hasattr(store, "drop_schema")
        and not isinstance(failure, StoreUnavailableError)
    ):
        with contextlib.suppress(Exception):
            await asyncio.wait_for(store.drop_schema(), _DISCARD_S)
            left.removed.append(f"PostgreSQL schema {left.schema}")


async def _clean_or_note(redis: Any, store: Any, left: Leftovers, *, keep: bool) -> None:
    if keep or not left.own_prefix:
        left.note_kept(await count_keys(redis, left.prefix))
        if keep:
            return
        left.kept = [k for k in left.kept if "Redis keys" in k]  # the rest is ours: removed below
    else:
        removed = await remove_keys(redis, left.prefix)
        if left.real_redis and removed:
            left.removed.append(f"{removed} Redis keys under prefix {left.prefix!r}")
    if left.schema is not None and hasattr(store, "drop_schema"):
        await store.drop_schema()
        left.removed.append(f"PostgreSQL schema {left.schema}")


class ServeMetricsHook:
    """Adds each in-process service's registry to the run's /metrics endpoint as it starts."""

    def __init__(self, endpoint: Any) -> None:
        self.endpoint = endpoint

    async def on_start(self, run: Any) -> None:
        for ctx in run.ctxs.values():
            self.endpoint.collector.add(ctx.metrics.registry)

    async def after_batch(self, run: Any, published: int, total: int) -> None:
        """Nothing to do after a batch."""

    async def before_drain(self, run: Any) -> None:
        """Nothing to do before the drain."""


def _summary(result: Any, settings: dict[ServiceName, ServiceSettings]) -> dict[str, Any]:
    return {
        "trades": result.trades,
        "seconds": round(result.seconds, 3),
        "quiescent": result.quiescent,
        "streams": result.stream_lengths,
        "dead_letters": result.dead_letters,
        "services": {name: vars(report) for name, report in result.services.items()},
        "order_results": len(result.order_results),
        "stored_rows": len(result.stored_rows),
    }


_PRODUCED = {
    ServiceName.WS: "trades_published",
    ServiceName.SIGNAL: "signals",
    ServiceName.RISK: "orders",
    ServiceName.EXECUTION: "fills",
}
"""The business event counting what each service produces (the summary's "produced")."""


def _print_summary(
    result: Any, settings: dict[ServiceName, ServiceSettings], redis_url: str | None, prefix: str
) -> None:
    where = redact_url(redis_url) if redis_url else "embedded fakeredis"
    head = f"on {where}, key prefix {prefix!r}: {result.trades} trades in {result.seconds:.2f}s"
    console.print(f"[bold]cdb run[/] {shown(head)}")
    topics = [[t.value, result.stream_lengths[t.value], result.dead_letters[t.value]] for t in Topic]
    console.print(table("Messages per topic", ["topic", "stream entries", "dead letters"], topics))
    rows = []
    for service in ServiceName:
        report = result.services[service.value]
        c = report.counts
        rows.append(
            [
                service.value,
                report.path,
                report.profile or "-",
                # ws handles the trades its source gives it (published, or dead-lettered as bad).
                c.get("trades_published", 0) + c.get("bad_frames", 0)
                if service is ServiceName.WS
                else c.get("messages_ok", 0),
                c.get(_PRODUCED[service], "-"),
                c.get("rejections", c.get("rejected_orders", 0)),
                c.get("validation_errors", 0),
                c.get("dead_letters", 0),
                shown(_defaults(c)),
            ]
        )
    console.print(
        table(
            "Services",
            [
                "service",
                "path",
                "profile",
                "handled",
                "produced",
                "rejections",
                "validation errors",
                "dead letters",
                "defaults filled",
            ],
            rows,
        )
    )
    console.print(
        f"order results on the stream: {len(result.order_results)}, rows stored: {len(result.stored_rows)}"
    )


def _defaults(counts: dict[str, Any]) -> str:
    filled = counts.get("defaults_by_field", {})
    return ", ".join(f"{k}={v}" for k, v in sorted(filled.items())) or "0"
