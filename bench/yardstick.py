"""How fast this run's machine is next to the committed run's, on work no commit of ours changes.

The absolute figures (msg/s, ms, us) belong to one machine, and two machines of the same kind
have differed threefold here, which reads as a regression or a gain that the code never made.
msgspec, third-party code at the same version in both runs, decoding and encoding the same
messages is work our commits do not touch: the ratio of its costs in the two runs is the
machine's factor. Redis ``PING`` (the loopback) and the fixed pure-Python workload
(:func:`bench.machine.python_speed_ms`) say the same where both runs have them. Ratios between
paths measured in one run (the ``x`` targets) do not depend on any of it.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["Yardstick", "compare"]

_CASE = "msgspec"


@dataclass(frozen=True, slots=True)
class Yardstick:
    """This run's machine against a reference run's: each factor is this run's time over the
    reference's (2.0: this machine takes twice as long), or ``None`` where it cannot be told."""

    reference: str
    """The reference run: its date and machine."""
    msgspec: float | None
    """msgspec's cost per message, same version in both runs (median over its cases)."""
    ping: float | None
    """Redis PING on loopback."""
    python: float | None
    """The fixed pure-Python workload."""

    def to_json(self) -> dict[str, Any]:
        """As BENCHMARKS.json keeps it."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Yardstick:
        """Back from :meth:`to_json`."""
        return cls(data["reference"], data.get("msgspec"), data.get("ping"), data.get("python"))

    def sentence(self) -> str:
        """One Markdown sentence for the summary (empty when no factor could be told)."""
        parts = [
            f"{what} {factor:.1f}x as long"
            for what, factor in (
                ("msgspec's unchanged code took", self.msgspec),
                ("Redis PING", self.ping),
                ("a fixed pure-Python workload", self.python),
            )
            if factor is not None
        ]
        if not parts:
            return ""
        return (
            f"This machine against the committed run of {self.reference}: {', '.join(parts)}. "
            "Absolute figures (msg/s, ms, us) of the two runs differ by about that much before any "
            "code change counts; the ratios between paths (the x targets) do not depend on the machine."
        )


def _msgspec_costs(document: Mapping[str, Any]) -> dict[tuple[str, str], float]:
    rows = document.get("codec_us_per_message") or []
    return {(r["topic"], r["operation"]): float(r["median"]) for r in rows if r.get("case") == _CASE}


def _ratio(now: Any, then: Any) -> float | None:
    if isinstance(now, int | float) and isinstance(then, int | float) and then > 0 and now > 0:
        return round(now / then, 2)
    return None


def compare(current: Mapping[str, Any], reference: Mapping[str, Any]) -> Yardstick | None:
    """``current`` (this run's BENCHMARKS.json document, its codec rows measured in this run or
    absent) against ``reference`` (the committed one); ``None`` without a reference run or when
    it is this run (the same date)."""
    mine, theirs = current.get("machine") or {}, reference.get("machine") or {}
    if not theirs or theirs.get("date") == mine.get("date"):
        return None
    same_msgspec = (mine.get("packages") or {}).get(_CASE) == (theirs.get("packages") or {}).get(_CASE)
    now, then = _msgspec_costs(current), _msgspec_costs(reference)
    shared = sorted(now.keys() & then.keys())
    msgspec = (
        round(statistics.median(now[k] / then[k] for k in shared), 2)
        if same_msgspec and shared and all(then[k] > 0 for k in shared)
        else None
    )
    return Yardstick(
        reference=f"{theirs.get('date', 'an earlier run')} ({theirs.get('cpu', 'unknown CPU')}, "
        f"{theirs.get('os', 'unknown OS')})",
        msgspec=msgspec,
        ping=_ratio(mine.get("redis_ping_us"), theirs.get("redis_ping_us")),
        python=_ratio(mine.get("python_speed_ms"), theirs.get("python_speed_ms")),
    )
