"""``cdb bench``: the benchmark suite (``python -m bench``) from the command line.

The ``bench`` package is a development tool that lives beside ``core`` in a source
checkout (it is not installed); every option is passed through, see ``cdb bench --help``.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

import typer

CHECKOUT = Path(__file__).resolve().parents[2]
BENCH_EXTRA = ("msgspec", "faststream", "matplotlib")
"""Modules of the ``bench`` extra that the benchmarks import."""


def bench(ctx: typer.Context) -> None:
    """Run the benchmarks (codec, publish/consume vs FastStream and redis-py, end to end) and
    write BENCHMARKS.md/.json/.png; options as ``python -m bench --help`` (``--quick``: a smoke run
    written to var/bench-quick/). Needs the bench extra: ``pip install -e '.[bench]'``."""
    if not (CHECKOUT / "bench" / "__main__.py").exists():
        typer.echo("cdb bench runs from a source checkout: bench/ is not installed", err=True)
        raise typer.Exit(2)
    missing = [name for name in BENCH_EXTRA if importlib.util.find_spec(name) is None]
    if missing:
        typer.echo(
            f"cdb bench needs the bench extra ({', '.join(missing)} missing): pip install -e '.[bench]'",
            err=True,
        )
        raise typer.Exit(2)
    if str(CHECKOUT) not in sys.path:
        sys.path.insert(0, str(CHECKOUT))
    runner = importlib.import_module("bench.__main__")
    raise typer.Exit(runner.main(list(ctx.args)))
