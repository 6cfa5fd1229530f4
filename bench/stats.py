"""Figures with their spread: every benchmark number is the median of several samples."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Figure", "percentile"]


@dataclass
class Figure:
    """Samples of one measured quantity (rounds, or per-second rates); reported as the median
    with the min-max range and the interquartile range."""

    samples: list[float] = field(default_factory=list)

    def add(self, value: float) -> None:
        """Record one sample."""
        self.samples.append(float(value))

    @property
    def median(self) -> float:
        """The reported value."""
        return statistics.median(self.samples) if self.samples else float("nan")

    @property
    def low(self) -> float:
        """The smallest sample."""
        return min(self.samples) if self.samples else float("nan")

    @property
    def high(self) -> float:
        """The largest sample."""
        return max(self.samples) if self.samples else float("nan")

    def quartiles(self) -> tuple[float, float]:
        """(Q1, Q3); both the median for fewer than two samples."""
        if len(self.samples) < 2:
            return self.median, self.median
        q1, _, q3 = statistics.quantiles(self.samples, n=4, method="inclusive")
        return q1, q3

    def spread(self, digits: int = 0, scale: float = 1.0) -> str:
        """``min-max`` as text, scaled (e.g. 1e6 for microseconds)."""
        return f"{self.low * scale:,.{digits}f}-{self.high * scale:,.{digits}f}"

    def to_json(self) -> dict[str, Any]:
        """Median, min, max, quartiles and the raw samples."""
        q1, q3 = self.quartiles()
        return {
            "median": self.median,
            "min": self.low,
            "max": self.high,
            "q1": q1,
            "q3": q3,
            "samples": self.samples,
        }


def percentile(sorted_values: list[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of already sorted values, nearest rank."""
    if not sorted_values:
        return float("nan")
    rank = max(0, min(len(sorted_values) - 1, round(q / 100 * len(sorted_values) + 0.5) - 1))
    return sorted_values[rank]
