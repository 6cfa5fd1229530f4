"""The chart embedded in BENCHMARKS.md, drawn from the run's JSON document.

Three panels: publish and consume throughput (both on a log axis, bar = median,
whiskers = min-max of the rounds) with the throughput targets drawn where they fall,
and the whole pipeline per setting (capacity, with the capacity target, and the
market_data -> order_result p99 against its target). Drawn from the same document
BENCHMARKS.json holds, so ``python -m bench.chart`` redraws a committed run without
measuring anything again.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bench.targets import BARE_RATIO, CAPACITY_TARGET, FASTSTREAM_RATIO, P99_TARGET_MS
from bench.throughput import CONSUME, PUBLISH, Row

__all__ = ["draw_chart", "main"]

COLOURS = {"project": "#2b6cb0", "peer": "#dd6b20", "reference": "#718096"}
TARGET_COLOUR = "#c53030"
E2E_TARGET = CAPACITY_TARGET  # the targets are bench.targets', drawn where they fall

# (panel, multiple of which row's median, label): each throughput target as a rate on its panel.
_PUBLISH_TARGETS = (
    (3.0, "faststream_pipeline", "target: 3x FastStream pipelined"),
    (10.0, "naive", "target: 10x naive"),
)
_CONSUME_TARGETS = (
    (FASTSTREAM_RATIO, "faststream_batch", f"target: {FASTSTREAM_RATIO:g}x FastStream batch"),
    (BARE_RATIO, "bare_strict", f"target: {BARE_RATIO:g}x bare loop (strict)"),
)


def _panel(
    ax: Any,
    rows: Sequence[Row],
    figures: Mapping[str, Mapping[str, Any]],
    title: str,
    targets: Any,
    *,
    xlim: tuple[float, float],
) -> None:
    shown = [r for r in rows if r.key in figures]
    medians = [figures[r.key]["median"] for r in shown]
    low = [m - figures[r.key]["min"] for r, m in zip(shown, medians, strict=True)]
    high = [figures[r.key]["max"] - m for r, m in zip(shown, medians, strict=True)]
    y = list(range(len(shown)))[::-1]
    ax.barh(y, medians, xerr=[low, high], color=[COLOURS[r.kind] for r in shown], capsize=3)
    ax.set_yticks(y, [r.label for r in shown], fontsize=8)
    ax.set_xscale("log")
    marks = sorted(
        (factor * figures[key]["median"], label) for factor, key, label in targets if key in figures
    )
    for i, (x, label) in enumerate(marks):
        ax.axvline(x, color=TARGET_COLOUR, linestyle="--", linewidth=1)
        # Close lines would print their labels over each other: the first to the left of its line.
        left = i == 0 and len(marks) > 1
        text = f"{label} " if left else f" {label}"
        ax.text(x, len(shown) - 0.4, text, color=TARGET_COLOUR, fontsize=7, ha="right" if left else "left")
    ax.set_xlim(*xlim)  # the same range on both panels: their bars compare directly
    ax.set_ylim(-0.6, len(shown) + 0.3)
    ax.set_xlabel("messages per second (log scale; bar = median, whiskers = min-max of the rounds)")
    ax.set_title(title, fontsize=10)
    for yi, r, m in zip(y, shown, medians, strict=True):
        ax.text(figures[r.key]["max"] * 1.08, yi, f"{m:,.0f}", va="center", fontsize=7)


def _e2e_panel(ax: Any, rows: Sequence[Mapping[str, Any]]) -> None:
    names = [r["setting"] for r in rows]
    caps = [r["capacity"] for r in rows]
    medians = [c["median"] for c in caps]
    y = list(range(len(rows)))[::-1]
    ax.barh(
        y,
        medians,
        xerr=[
            [m - c["min"] for m, c in zip(medians, caps, strict=True)],
            [c["max"] - m for m, c in zip(medians, caps, strict=True)],
        ],
        color=COLOURS["project"],
        capsize=3,
    )
    ax.set_yticks(y, names, fontsize=8)
    ax.axvline(E2E_TARGET, color=TARGET_COLOUR, linestyle="--", linewidth=1)
    ax.text(E2E_TARGET, len(rows) - 0.4, f" target: {E2E_TARGET:,} msg/s", color=TARGET_COLOUR, fontsize=7)
    top = max(c["max"] for c in caps)
    ax.set_xlim(0, max(top, E2E_TARGET) * 1.6)  # the target line always on the panel
    ax.set_ylim(-0.6, len(rows) + 0.3)
    for yi, m, c, r in zip(y, medians, caps, rows, strict=True):
        p99 = (r.get("latency_ms_market_data_to_order_result") or {}).get("p99")
        late = f"; p99 {p99:.0f} ms (target < {P99_TARGET_MS})" if isinstance(p99, int | float) else ""
        ax.text(c["max"] * 1.02, yi, f"{m:,.0f} msg/s{late}", va="center", fontsize=7)
    ax.set_xlabel("market_data messages per second through ws -> signal -> risk -> execution (linear)")
    ax.set_title("End to end: capacity per setting, and trade -> order result p99 latency", fontsize=10)


def draw_chart(document: Mapping[str, Any], path: Path) -> None:
    """Write the chart of a BENCHMARKS.json ``document`` as a PNG at ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    figures = {row["key"]: row for row in document.get("throughput_messages_per_s", [])}
    e2e = document.get("end_to_end", [])
    panels = 3 if e2e else 2
    fig, axes = plt.subplots(panels, 1, figsize=(10, 3.6 * panels), height_ratios=[8, 8, 3][:panels])
    marks = [f * figures[k]["median"] for f, k, _ in (*_PUBLISH_TARGETS, *_CONSUME_TARGETS) if k in figures]
    xlim = (
        min(row["min"] for row in figures.values()) / 2,
        max([*(row["max"] for row in figures.values()), *marks]) * 4,
    )
    consume = "Consume: read + decode + validate + ack (market_data)"
    _panel(axes[0], PUBLISH, figures, "Publish (market_data)", _PUBLISH_TARGETS, xlim=xlim)
    _panel(axes[1], CONSUME, figures, consume, _CONSUME_TARGETS, xlim=xlim)
    if e2e:
        _e2e_panel(axes[2], e2e)
    handles = [Patch(color=c, label=k) for k, c in COLOURS.items()]
    axes[1].legend(handles=handles, loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    """``python -m bench.chart [BENCHMARKS.json [BENCHMARKS.png]]``: redraw from a run's JSON."""
    args = sys.argv[1:] if argv is None else argv
    source = Path(args[0]) if args else Path("BENCHMARKS.json")
    target = Path(args[1]) if len(args) > 1 else source.with_suffix(".png")
    draw_chart(json.loads(source.read_text(encoding="utf-8")), target)
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
