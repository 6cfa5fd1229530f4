"""The throughput chart embedded in BENCHMARKS.md: publish and consume rows, median and range."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.stats import Figure
from bench.throughput import CONSUME, PUBLISH, Row

__all__ = ["draw_throughput"]

COLOURS = {"project": "#2b6cb0", "peer": "#dd6b20", "reference": "#718096"}


def _panel(ax: Any, rows: list[Row], figures: dict[str, Figure], title: str, *, log: bool) -> None:
    shown = [r for r in rows if r.key in figures]
    medians = [figures[r.key].median for r in shown]
    highs = [figures[r.key].high for r in shown]
    low = [m - figures[r.key].low for r, m in zip(shown, medians, strict=True)]
    high = [h - m for h, m in zip(highs, medians, strict=True)]
    y = list(range(len(shown)))[::-1]
    ax.barh(y, medians, xerr=[low, high], color=[COLOURS[r.kind] for r in shown], capsize=3)
    ax.set_yticks(y, [r.label for r in shown], fontsize=8)
    if log:
        ax.set_xscale("log")
    ax.set_xlim(right=max(highs) * (3 if log else 1.25))
    scale = "log scale" if log else "linear"
    ax.set_xlabel(f"messages per second ({scale}; bar = median, whiskers = min-max of the rounds)")
    ax.set_title(title, fontsize=10)
    for yi, m, h in zip(y, medians, highs, strict=True):
        ax.text(h * 1.08 if log else h + max(highs) * 0.02, yi, f"{m:,.0f}", va="center", fontsize=7)


def draw_throughput(figures: dict[str, Figure], path: Path) -> None:
    """Write the chart as a PNG at ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 7.5))
    _panel(top, PUBLISH, figures, "Publish (market_data)", log=True)
    _panel(bottom, CONSUME, figures, "Consume: read + decode + validate + ack (market_data)", log=False)
    handles = [Patch(color=c, label=k) for k, c in COLOURS.items()]
    bottom.legend(handles=handles, loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
