"""``python -m bench`` (or ``cdb bench``): the whole benchmark in one run, written to BENCHMARKS.md/.json.

Sections: codec cost per message, publish and consume throughput against the peers
(FastStream, bare redis-py), the pipeline end to end (capacity, latency, memory) per
setting. Real Redis (``CDB_BENCH_REDIS_URL``, default ``redis://127.0.0.1:6379/13``) under a
key prefix of its own that is deleted afterwards; PostgreSQL (``CDB_BENCH_PG_URL``, default
``postgresql://postgres@127.0.0.1:5432/postgres``) for a database of its own, dropped
afterwards. ``--quick`` is a smoke run with tiny sizes (its figures mean nothing).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

from bench.yardstick import Yardstick, compare
from cdb.plugins import install_plugins

__all__ = ["main", "run"]

ROOT = Path(__file__).resolve().parent.parent
REDIS_URL = os.environ.get("CDB_BENCH_REDIS_URL", "redis://127.0.0.1:6379/13")
PG_URL = os.environ.get("CDB_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
SECTIONS = ("codec", "throughput", "e2e")
QUICK_OUT = ROOT / "var" / "bench-quick"
"""Where ``--quick`` writes unless ``--out`` says otherwise (git-ignored)."""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench", description=(__doc__ or "").splitlines()[0])
    p.add_argument("--quick", action="store_true", help="smoke run: tiny sizes, one end-to-end setting")
    p.add_argument("--rounds", type=int, default=7, help="rounds per codec/throughput figure (default 7)")
    p.add_argument("--n", type=int, default=20_000, help="messages per throughput round (default 20,000)")
    p.add_argument("--codec-n", type=int, default=5_000, help="messages per topic per codec round")
    p.add_argument("--seconds", type=float, default=30.0, help="seconds per end-to-end phase (default 30)")
    p.add_argument("--rate", type=float, default=20_000.0, help="offered market_data/s in the latency phase")
    p.add_argument(
        "--settings",
        default="all-legacy,all-pydantic,mixed,all-pydantic+comparator,all-pydantic+inproc-shadow",
        help="end-to-end settings to run",
    )
    p.add_argument(
        "--curve",
        default="1000,5000,10000,20000",
        help="offered market_data/s of the latency curve (plain settings; '' = none)",
    )
    p.add_argument(
        "--attempts", type=int, default=3, help="runs of an end-to-end setting while the machine is busy"
    )
    p.add_argument("--curve-seconds", type=float, default=10.0, help="seconds per curve point (default 10)")
    p.add_argument(
        "--curve-samples",
        type=int,
        default=300,
        help="a curve point runs longer than --curve-seconds (up to 60 s) until the probe can make about"
        " this many orders (default 300; 0: --curve-seconds only)",
    )
    p.add_argument(
        "--lift-limits",
        action="store_true",
        help="lift risk's position and exposure limits so every signal becomes an order (a stress of"
        " execution; default: risk's default limits, as in production)",
    )
    p.add_argument(
        "--probe-every",
        type=int,
        default=5,
        help="in the latency phases, every N-th trade is the probe symbol's (one order per 21 of them,"
        " within risk's default limits); 0: no probe (default 5)",
    )
    p.add_argument("--only", default=",".join(SECTIONS), help=f"sections to run, of {','.join(SECTIONS)}")
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="directory for BENCHMARKS.md/.json/.png (default: the checkout; with --quick: var/bench-quick,"
        " so smoke figures never overwrite the committed ones)",
    )
    p.add_argument("--keep-logs", type=Path, default=None, help="copy the services' logs here")
    p.add_argument(
        "--quiet-wait",
        type=float,
        default=60.0,
        help="seconds to wait, before each round, for other work on the machine to stop (0: never)",
    )
    return p


def _quick(args: argparse.Namespace) -> None:
    args.rounds, args.n, args.codec_n = 2, 400, 100
    args.seconds, args.rate, args.quiet_wait = 2.0, 1_000.0, 0.0
    args.curve, args.curve_seconds, args.curve_samples = "500", 2.0, 0
    if args.settings == _parser().get_default("settings"):
        args.settings = "all-pydantic"


async def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run the chosen sections; write the Markdown, JSON and chart into ``args.out``."""
    from bench.carry import CARRIED_KEYS, carried_targets, load_previous, section_dates
    from bench.chart import draw_chart
    from bench.codec_cost import measure_codecs
    from bench.e2e import SETTINGS, run_e2e
    from bench.machine import QuietGate, describe_machine, load_average
    from bench.report import Run, merge_document, to_json, to_markdown
    from bench.targets import evaluate
    from bench.throughput import measure_throughput
    from core.logging import configure_logging

    configure_logging("WARNING")
    only = {s.strip() for s in args.only.split(",")}
    command = "python -m bench" + (" --quick" if args.quick else "")
    machine = describe_machine(REDIS_URL, PG_URL)
    result = Run(command=command, machine=machine, rounds=args.rounds, n=args.n, codec_n=args.codec_n)
    gate = result.gate = QuietGate(args.quiet_wait)
    if "codec" in only:
        _say("codec cost")
        result.costs = measure_codecs(args.codec_n, args.rounds, gate)
    if "throughput" in only:
        _say("publish / consume throughput")
        result.rates = await measure_throughput(REDIS_URL, args.n, args.rounds, gate)
    if "e2e" in only:
        wanted = [s.strip() for s in args.settings.split(",")]
        chosen = [s for s in SETTINGS if s.name in wanted]
        _say(f"end to end: {', '.join(s.name for s in chosen)}")
        result.e2e = await run_e2e(
            REDIS_URL,
            PG_URL,
            chosen,
            seconds=args.seconds,
            rate=args.rate,
            keep_logs=args.keep_logs,
            gate=gate,
            attempts=1 if args.quick else max(1, args.attempts),
            curve=[float(r) for r in args.curve.split(",") if r.strip()],
            curve_seconds=args.curve_seconds,
            curve_samples=args.curve_samples,
            lift_limits=args.lift_limits,
            probe_every=0 if args.lift_limits else max(0, args.probe_every),
        )
    result.load_end = load_average()
    previous = load_previous(args.out)
    committed = previous if args.out.resolve() == ROOT else load_previous(ROOT)
    ran = {s for s in SECTIONS if s in only}
    targets = carried_targets(previous, ran) + evaluate(result.costs, result.rates, result.e2e)
    order = ("codec:", "publish_many", "consumer", "end to end", "shadow")  # sections' order, carried or not
    result.targets = sorted(
        targets, key=lambda t: next((i for i, p in enumerate(order) if t.name.startswith(p)), 9)
    )
    args.out.mkdir(parents=True, exist_ok=True)
    if result.rates or previous.get(CARRIED_KEYS["throughput"]):
        result.chart = "BENCHMARKS.png"
    # Before carried figures join the document: only this run's msgspec costs tell its machine.
    result.yardstick = compare(to_json(result, args.seconds), committed)
    document = to_json(result, args.seconds)
    document["section_dates"] = section_dates(previous, ran, machine["date"])
    for section, key in CARRIED_KEYS.items():
        if section not in ran and key in previous:
            document[key] = previous[key]  # figures of the earlier run, as BENCHMARKS.md keeps them
    if result.rates or document.get(CARRIED_KEYS["throughput"]):
        # Carried throughput figures count too: the chart shows the end-to-end rows of this run.
        draw_chart(document, args.out / "BENCHMARKS.png")
    target = args.out / "BENCHMARKS.md"
    existing = target.read_text(encoding="utf-8") if target.exists() else None
    target.write_text(merge_document(to_markdown(result, args.seconds), existing), encoding="utf-8")
    (args.out / "BENCHMARKS.json").write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
    return document


def _say(what: str) -> None:
    print(f"bench: {what} ...", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The options, with ``--quick``'s sizes and its own output directory filled in."""
    args = _parser().parse_args(argv)
    install_plugins()  # the benchmarks measure every codec mode, the migration's too
    if args.out is None:
        args.out = QUICK_OUT if args.quick else ROOT
    if args.quick:
        _quick(args)
    return args


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv``, run, print the target verdicts; exit status 0 (figures are not a test)."""
    args = parse_args(argv)
    document = asyncio.run(run(args))
    for t in document["targets"]:
        print(f"{'met   ' if t['met'] else 'MISSED'} {t['name']}: {t['measured']} (wanted {t['wanted']})")
    machine = document.get("machine_vs_committed")
    if machine:
        print(Yardstick.from_json(machine).sentence())
    print(
        f"wrote {args.out / 'BENCHMARKS.md'}, BENCHMARKS.json"
        + (", BENCHMARKS.png" if (args.out / "BENCHMARKS.png").exists() else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
