"""``cdb matrix``: every mix of legacy and Pydantic services against the all-legacy baseline.

Exit status: 0 when every row did what its expectation states, 1 when any did not
(or the baseline is unusable), 2 on bad options or an unreachable server.
"""

from __future__ import annotations

import asyncio
import importlib
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from cdb.cli.interrupt import SIGTERM_EXIT, StoppedBySigtermError, interruptible
from cdb.cli.options import (
    DEFAULT_REDIS_URL,
    RedisModeOption,
    SentinelMaster,
    Sentinels,
    cli_target,
    open_sync_target,
)
from cdb.cli.output import console, exit_with, print_json, shown
from core.errors import CdbError, ConfigError
from core.redis.modes import RedisTarget
from services.ws.replay import BUNDLED_TRADES

if TYPE_CHECKING:
    from harness.matrix import MatrixConfig, MatrixReport, Mix
    from services.pipeline_control import CodecFactory

FAULTS = ("consumer-restart", "redis-restart", "malformed")


def matrix(
    mix: Annotated[
        list[str] | None,
        typer.Option(
            "--mix",
            help="Run only this mix (repeatable): ws=legacy,signal=pydantic,risk=strict,... "
            "(omitted services legacy) or a code like LPSL.",
        ),
    ] = None,
    only_lenient: Annotated[bool, typer.Option("--only-lenient", help="Only the 16 lenient mixes.")] = False,
    only_strict: Annotated[
        bool, typer.Option("--only-strict", help="Only the strict-profile mixes.")
    ] = False,
    data: Annotated[Path, typer.Option(help="Trades to replay (CSV).")] = BUNDLED_TRADES,
    redis_url: Annotated[
        str, typer.Option("--redis-url", envvar="REDIS_URL", help="A real Redis (isolated by key prefix).")
    ] = DEFAULT_REDIS_URL,
    database_url: Annotated[
        str | None,
        typer.Option(envvar="DATABASE_URL", help="PostgreSQL (one schema per mix); empty: SQLite files."),
    ] = None,
    fault: Annotated[
        list[str] | None,
        typer.Option("--fault", help=f"Also run every matching mix under this fault (repeatable): {FAULTS}."),
    ] = None,
    inputs: Annotated[
        str,
        typer.Option(
            "--inputs",
            help="clean: the recorded trades; mixed: plus legacy-shaped, timestamp-less and malformed "
            "messages, in the baseline too (docs/matrix.md).",
        ),
    ] = "clean",
    keep: Annotated[bool, typer.Option(help="Keep each mix's keys and schema for inspection.")] = False,
    concurrency: Annotated[int, typer.Option(min=1, help="Mixes running at the same time.")] = 4,
    json_out: Annotated[Path | None, typer.Option(help="Also write the report as JSON here.")] = None,
    markdown_out: Annotated[Path | None, typer.Option(help="Also write the report as Markdown here.")] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the report as JSON instead of a table.")
    ] = False,
    codec_factory: Annotated[
        str | None,
        typer.Option(help="module:function giving the codecs of the mixes under test (baseline: shipped)."),
    ] = None,
    log_level: Annotated[str, typer.Option(help="JSON logs on stderr at this level.")] = "ERROR",
    versions: Annotated[
        bool,
        typer.Option(
            "--versions",
            help="Instead: every mix of contract versions the producers write (all services on the "
            "Pydantic path), each against the all-legacy baseline (docs/changing-a-contract.md).",
        ),
    ] = False,
    redis_mode: RedisModeOption = "",
    sentinels: Sentinels = "",
    sentinel_master: SentinelMaster = "",
) -> None:
    """Run every mix of codec paths across the services and compare it with the baseline mix."""
    from core.logging import configure_logging

    configure_logging(log_level)
    try:
        config = _config(
            _selection(mix, only_lenient, only_strict),
            fault,
            data=data,
            redis_url=redis_url,
            database_url=database_url,
            keep=keep,
            concurrency=concurrency,
            codec_factory=codec_factory,
            inputs=inputs,
        )
        target = cli_target(redis_url, redis_mode, sentinels, sentinel_master)
        _check_redis(target)
        config = replace(config, redis_target=target)
        if versions:
            from cdb.cli.matrix_versions import run_versions

            run_versions(config, as_json=as_json, json_out=json_out)
            return
        report = asyncio.run(interruptible(lambda _: _run(config, quiet=as_json)))
    except CdbError as exc:
        exit_with(exc)
    except StoppedBySigtermError:
        # Cancelled like Ctrl-C: every run's finally block stopped its servers and removed its
        # keys, schemas and directories before this line.
        console.print("[bold red]interrupted by SIGTERM[/]: no verdict; what the runs made is removed")
        raise SystemExit(SIGTERM_EXIT) from None
    _write_outputs(report, json_out, markdown_out)
    if as_json:
        from harness.matrix import report_dict

        print_json(report_dict(report))
    else:
        _print(report)
    if not report.ok:
        raise SystemExit(1)


def _selection(mix: list[str] | None, only_lenient: bool, only_strict: bool) -> list[Mix]:
    from harness.matrix import Mix, lenient_mixes, strict_mixes

    if mix and (only_lenient or only_strict):
        raise ConfigError("--mix", ", ".join(mix), ["--mix alone, or --only-lenient/--only-strict"])
    if only_lenient and only_strict:
        raise ConfigError("--only-lenient/--only-strict", "both", ["one of them (neither: all mixes)"])
    if mix:
        return [Mix.parse(m) for m in mix]
    if only_lenient:
        return lenient_mixes()
    if only_strict:
        return strict_mixes()
    return lenient_mixes() + strict_mixes()


def _config(
    mixes: list[Mix],
    fault: list[str] | None,
    *,
    data: Path,
    redis_url: str,
    database_url: str | None,
    keep: bool,
    concurrency: int,
    codec_factory: str | None,
    inputs: str = "clean",
) -> MatrixConfig:
    from harness.matrix import Fault, InputSet, MatrixConfig

    if inputs not in InputSet.__members__.values():
        raise ConfigError("--inputs", inputs, [i.value for i in InputSet])

    faults = []
    for name in fault or []:
        if name not in FAULTS:
            raise ConfigError("--fault", name, list(FAULTS))
        faults.append(Fault(name))
    if not data.is_file():
        raise ConfigError("--data", str(data), ["a trades CSV file, e.g. services/ws/data/trades_small.csv"])
    return MatrixConfig(
        mixes=mixes,
        data=data,
        redis_url=redis_url,
        database_url=database_url or None,
        faults=faults,
        keep=keep,
        concurrency=concurrency,
        codec_factory=_load_factory(codec_factory) if codec_factory else None,
        inputs=InputSet(inputs),
    )


def _load_factory(spec: str) -> CodecFactory:
    module_name, _, attr = spec.partition(":")
    try:
        factory: CodecFactory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ConfigError("--codec-factory", spec, ["module:function"], str(exc)) from None
    return factory


def _check_redis(target: RedisTarget) -> None:
    open_sync_target(target).close()  # ConfigError (mode) or TransportError (unreachable)


async def _run(config: MatrixConfig, *, quiet: bool) -> MatrixReport:
    from harness.matrix import MatrixRow, run_matrix

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, disable=quiet, transient=True) as bar:
        task = bar.add_task("baseline (all legacy)", total=None)

        def started(total: int) -> None:
            bar.update(task, total=total)

        def finished(row: MatrixRow) -> None:
            fault = f" under {row.case.fault}" if row.case.fault else ""
            bar.update(task, advance=1, description=f"{row.case.mix.code}{fault}: {row.verdict.summary[:60]}")

        return await run_matrix(config, on_start=started, on_row=finished)


def _write_outputs(report: MatrixReport, json_out: Path | None, markdown_out: Path | None) -> None:
    from harness.matrix import to_json, to_markdown

    for path, render in ((json_out, to_json), (markdown_out, to_markdown)):
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(render(report), encoding="utf-8")


def _print(report: MatrixReport) -> None:
    from harness.matrix import report_dict
    from harness.matrix.report import COLUMNS, cells

    data = report_dict(report)
    table = Table(
        title=Text(f"cdb matrix: {data['trades']} trades from {data['data']}, inputs {data['inputs']}")
    )
    for column in COLUMNS:
        wraps = column in ("outcome", "dead-lettered entries")  # the others are short: keep them on one line
        heading = column.replace(" ", "\n", 1) if "/" in column else column
        table.add_column(heading, overflow="fold", no_wrap=not wraps)
    for row in [data["baseline"], *data["rows"]]:
        table.add_row(*(shown(c) for c in cells(row)), style=None if row["ok"] else "bold red")
    console.print(table)
    passed = data["rows_total"] - data["rows_failed"]
    colour = "green" if report.ok else "red"
    console.print(
        f"[bold {colour}]{passed} of {data['rows_total']} rows as expected[/] in {data['seconds']:.1f}s"
    )
    for row in [data["baseline"], *data["rows"]]:
        if "kept" in row:
            kept = row["kept"]
            where = kept["sqlite"] or f"schema {kept['schema']}"
            console.print(
                f"kept {row['mix']}: key prefix {kept['key_prefix']!r}, results in {where}", markup=False
            )
    for row in [data["baseline"], *data["rows"]]:
        if not row["ok"]:
            fault = f" / {row['fault']}" if row["fault"] else ""
            console.print(f"[red]{shown(row['spec'] + fault)}:[/]")
            for problem in row["problems"]:
                console.print(f"  - {problem}", markup=False)
