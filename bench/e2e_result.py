"""What one end-to-end setting is and what it measured (:mod:`bench.e2e`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from bench.stats import Figure, percentile
from core.topics import CodecPath, ServiceName

__all__ = ["SETTINGS", "E2eResult", "Setting", "summarize"]


@dataclass(frozen=True)
class Setting:
    """Which path each service runs on (Pydantic services use the lenient profile)."""

    name: str
    paths: dict[ServiceName, CodecPath]
    shadow: str = ""
    """``""``: none; ``"comparator"``: ``cdb shadow signal`` beside it; ``"inproc"``:
    CONTRACT_SHADOW=true in signal."""

    def describe(self) -> str:
        """``ws=legacy signal=pydantic ...``."""
        paths = " ".join(f"{s.value}={p.value}" for s, p in self.paths.items())
        extra = {"comparator": " + cdb shadow signal", "inproc": " + signal CONTRACT_SHADOW=true"}
        return paths + extra.get(self.shadow, "")


SETTINGS = [
    Setting("all-legacy", dict.fromkeys(ServiceName, CodecPath.LEGACY)),
    Setting("all-pydantic", dict.fromkeys(ServiceName, CodecPath.PYDANTIC)),
    Setting(
        "mixed",
        {
            ServiceName.WS: CodecPath.LEGACY,
            ServiceName.SIGNAL: CodecPath.PYDANTIC,
            ServiceName.RISK: CodecPath.LEGACY,
            ServiceName.EXECUTION: CodecPath.PYDANTIC,
        },
    ),
    Setting("all-pydantic+comparator", dict.fromkeys(ServiceName, CodecPath.PYDANTIC), shadow="comparator"),
    Setting("all-pydantic+inproc-shadow", dict.fromkeys(ServiceName, CodecPath.PYDANTIC), shadow="inproc"),
]


@dataclass
class E2eResult:
    """What one setting achieved."""

    setting: Setting
    rate: float = 0.0
    seconds: float = 0.0
    """How long the latency phase at ``rate`` ran (warm-up included)."""
    capacity: Figure = field(default_factory=Figure)
    capacity_avg: float = 0.0
    capacity_backlog: dict[str, int] = field(default_factory=dict)
    offered: float = 0.0
    consumed: Figure = field(default_factory=Figure)
    consumed_avg: float = 0.0
    latency_results: list[int] = field(default_factory=list)
    latency_signals: list[int] = field(default_factory=list)
    drained: bool = False
    max_ahead_ms: int = 0
    rss_mb: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    foreign_cpu: dict[str, float] = field(default_factory=dict)
    attempts: int = 1
    cpu_us: dict[str, float] = field(default_factory=dict)
    """CPU us per market_data message over the capacity phase, per process and ``pipeline``."""
    rate_cpu_us: dict[str, float] = field(default_factory=dict)
    """The same over a fixed-rate window (the latency phase or a curve point)."""
    curve: list[dict[str, object]] = field(default_factory=list)
    """One point per offered rate: offered, consumed, and both latencies' percentiles."""
    comparator: dict[str, object] = field(default_factory=dict)
    """With a comparator: its largest backlog per phase and whether it caught up."""
    lift_limits: bool = False
    """Risk's position and exposure limits were lifted (every signal an order)."""
    probe_every: int = 0
    """In the latency windows every that-many-th trade was the probe symbol's (0: no probe)."""
    probe_primed: bool = False
    """The probe's first order was made before the capacity phase (so its orders pass risk)."""
    hops: dict[str, dict[str, float]] = field(default_factory=dict)
    """Latency phase, per hop (``<service> <topic>``): p50/p95/p99 ms and samples, every entry."""

    @property
    def contended(self) -> float:
        """The larger share of the CPU other processes used during either phase."""
        return max(self.foreign_cpu.values(), default=0.0)

    def latency(self, which: str = "results") -> dict[str, float]:
        """p50/p95/p99/max in ms."""
        return summarize(self.latency_results if which == "results" else self.latency_signals)


def summarize(latencies: list[int]) -> dict[str, float]:
    """p50/p95/p99/max/mean in ms and the sample count."""
    values = sorted(latencies)
    return {f"p{q}": percentile(values, q) for q in (50, 95, 99)} | {
        "max": float(values[-1]) if values else float("nan"),
        "mean": sum(values) / len(values) if values else float("nan"),
        "samples": float(len(values)),
    }
