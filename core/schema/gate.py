"""The compatibility gate: current contracts against the frozen snapshot of their version.

``contracts/snapshots/<api_version>/<topic>.json`` holds each topic's strict JSON
Schema as it was when that version was frozen (``cdb schema snapshot``). Every
change made since is classified by :mod:`core.schema.compat` against that frozen
baseline (so several small steps add up, as Schema Registry's *transitive* modes
do). A change that leaves some reader behind is allowed only together with a new
``api_version``; then it is compared with the newest older snapshot and reported
as versioned, and the new version waits to be frozen.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from core.schema.compat import Change, Compatibility, compare, overall
from core.schema.export import contract_schema, dumps
from core.topics import Topic

__all__ = ["GateReport", "GateStatus", "TopicVerdict", "api_version_of", "check", "write_snapshots"]


class GateStatus(StrEnum):
    """The verdict for one topic."""

    UNCHANGED = "unchanged"
    COMPATIBLE = "compatible"  # FULL-compatible changes within the frozen version
    VERSIONED = "versioned"  # changes under a new api_version that is not frozen yet
    BREAKING = "breaking"  # a reader is left behind and api_version did not change
    NO_SNAPSHOT = "no snapshot"  # the topic was never frozen

    @property
    def fails(self) -> bool:
        """The gate refuses this verdict."""
        return self in (GateStatus.BREAKING, GateStatus.NO_SNAPSHOT)


@dataclass(frozen=True)
class TopicVerdict:
    """How one topic's contract compares with its snapshot."""

    topic: Topic
    model: str
    version: str | None
    baseline: str | None
    status: GateStatus
    changes: list[Change] = field(default_factory=list)

    @property
    def compatibility(self) -> Compatibility:
        """What all changes together keep (FULL when nothing changed)."""
        return overall(self.changes)

    def message(self) -> str:
        """What a person must know: what broke, for which readers, and what to do."""
        if self.status is GateStatus.NO_SNAPSHOT:
            return f"{self.topic.value}: no snapshot of {self.model}; run `cdb schema snapshot`"
        if self.status is GateStatus.VERSIONED:
            return (
                f"{self.topic.value}: {self.model} is {self.version} (was {self.baseline}); "
                "run `cdb schema snapshot` to freeze it"
            )
        head = f"{self.topic.value}: {self.model} {self.status.value} against snapshot {self.baseline}"
        broken = [c for c in self.changes if c.breaking]
        if not broken:
            return head
        lines = [f"{head} without a new api_version:"] + [f"  - {c.explain()}" for c in broken]
        lines.append("  bump api_version (new contract version) or make the change additive")
        return "\n".join(lines)

    def as_json(self) -> dict[str, Any]:
        """The verdict for ``--json``."""
        return {
            "topic": self.topic.value,
            "model": self.model,
            "version": self.version,
            "baseline": self.baseline,
            "status": self.status.value,
            "fails": self.status.fails,
            "compatibility": self.compatibility.value,
            "changes": [
                {
                    "field": c.field,
                    "kind": c.kind.value,
                    "detail": c.detail,
                    "compatibility": c.compatibility.value,
                    "breaks": [r.value for r in c.compatibility.broken_readers],
                }
                for c in self.changes
            ],
        }


@dataclass(frozen=True)
class GateReport:
    """The verdicts of every topic."""

    verdicts: list[TopicVerdict]

    @property
    def failures(self) -> list[TopicVerdict]:
        """The verdicts the gate refuses."""
        return [v for v in self.verdicts if v.status.fails]

    @property
    def ok(self) -> bool:
        """True when no topic has an unversioned breaking change or a missing snapshot."""
        return not self.failures


def api_version_of(schema: Mapping[str, Any]) -> str | None:
    """The newest ``api_version`` a contract schema accepts (``const`` or ``enum``)."""
    prop = schema.get("properties", {}).get("api_version", {})
    values = [prop["const"]] if "const" in prop else list(prop.get("enum", ()))
    return max(values, key=_version_key) if values else None


def _version_key(version: str) -> tuple[int, ...]:
    digits = version.lstrip("vV").split(".")
    return tuple(int(d) if d.isdigit() else -1 for d in digits)


def _snapshots_of(root: Path, topic: Topic) -> dict[str, Path]:
    if not root.is_dir():
        return {}
    found = {d.name: d / f"{topic.value}.json" for d in root.iterdir() if d.is_dir()}
    return {version: path for version, path in found.items() if path.is_file()}


def _verdict(topic: Topic, model: type[BaseModel], root: Path) -> TopicVerdict:
    current = contract_schema(model)
    version = api_version_of(current)
    snapshots = _snapshots_of(root, topic)
    name = model.__name__
    if version is not None and version in snapshots:
        frozen = json.loads(snapshots[version].read_text(encoding="utf-8"))
        changes = compare(frozen, current)
        if any(c.breaking for c in changes):
            status = GateStatus.BREAKING
        else:
            status = GateStatus.COMPATIBLE if changes else GateStatus.UNCHANGED
        return TopicVerdict(topic, name, version, version, status, changes)
    older = sorted(
        (v for v in snapshots if version is None or _version_key(v) < _version_key(version)), key=_version_key
    )
    if not older:
        return TopicVerdict(topic, name, version, None, GateStatus.NO_SNAPSHOT)
    baseline = older[-1]
    frozen = json.loads(snapshots[baseline].read_text(encoding="utf-8"))
    changes = compare(frozen, current)
    if version is not None:
        status = GateStatus.VERSIONED
    else:  # without api_version a model cannot declare a new version: its breaking changes are unversioned
        status = GateStatus.BREAKING if any(c.breaking for c in changes) else GateStatus.COMPATIBLE
    return TopicVerdict(topic, name, version, baseline, status, changes)


def check(models: Mapping[Topic, type[BaseModel]], snapshots: Path) -> GateReport:
    """Compare every topic's current model with the snapshots under ``snapshots``."""
    return GateReport([_verdict(topic, model, snapshots) for topic, model in models.items()])


def write_snapshots(
    models: Mapping[Topic, type[BaseModel]], snapshots: Path, *, force: bool = False
) -> list[Path]:
    """Freeze each model's schema under its ``api_version``; an existing snapshot is kept
    unless ``force`` (a frozen version is a promise to readers). Returns the files written."""
    written = []
    for topic, model in models.items():
        schema = contract_schema(model)
        version = api_version_of(schema)
        if version is None:
            continue
        target = snapshots / version / f"{topic.value}.json"
        if target.exists() and not force:
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(dumps(schema), encoding="utf-8")
        written.append(target)
    return written
