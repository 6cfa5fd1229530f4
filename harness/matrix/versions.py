"""``cdb matrix --versions``: the pipeline with every mix of contract versions its producers write.

Every service runs on the Pydantic path (lenient), reads every declared version and hands its
code its own version (:mod:`core.versions.own`: execution v2.0, ws the version it writes, signal
and risk v1.0; the baseline's legacy path hands every one v1.0); what varies is the
version each producer writes (``PRODUCE_VERSION_<TOPIC>``): ws v1.0|v2.0, signal v1.0|v2.0,
risk v1.0|v1.1|v2.0, execution v1.0|v1.1|v2.0, 36 mixes. The expectation, stated up front:
every mix trades exactly like the all-legacy (= all-v1.0) baseline, because the versions carry
the same information here: v1.1's added fields take their defaults (GTC, no client id, an
unknown ordered size), and every price and size in the bundled trades has at most 15
significant digits, so a v2.0 decimal read back as v1.0 is the same float. A mix that differs
is a failure, with the matrix's own problem list.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

from core.codec import Codec, codec_for
from core.settings import ServiceSettings
from core.topics import ServiceName
from core.versions.declaration import BASE_VERSION, known_versions
from harness.matrix.isolated import Workspace
from harness.matrix.mixes import Mix
from harness.matrix.runner import MatrixConfig, run_matrix
from services.pipeline_control import CodecFactory

__all__ = ["EXPECTATION", "VersionMix", "VersionRow", "run_version_matrix", "version_mixes"]

EXPECTATION = "matches the all-v1.0 baseline (same signals, orders, fills, stored rows)"
_ALL_PYDANTIC = Mix.parse("PPPP")

VersionMix = Mapping[ServiceName, str]
"""The version each producing service writes (its output topic's)."""


@dataclass
class VersionRow:
    """One version mix and what its run did against the baseline."""

    writes: dict[str, str]
    ok: bool
    summary: str
    problems: list[str] = field(default_factory=list)
    expectation: str = EXPECTATION
    kept_prefix: str | None = None
    """With ``keep``: the key prefix of the mix's run, left in Redis for inspection."""
    kept_store: str | None = None
    """With ``keep``: where that run's results are stored (its SQLite file, or its schema)."""
    workspace: Workspace | None = field(default=None, repr=False, compare=False)
    """With ``keep``: the kept run itself; ``await workspace.clean()`` removes it."""

    @property
    def label(self) -> str:
        """``ws=v2.0 signal=v1.0 ...`` in pipeline order."""
        return " ".join(f"{s}={v}" for s, v in self.writes.items())


def version_mixes() -> list[dict[ServiceName, str]]:
    """Every combination of declared versions the four producers can write, all-v1.0 first."""
    choices = [known_versions(s.produces) for s in ServiceName]
    return [dict(zip(ServiceName, combo, strict=True)) for combo in itertools.product(*choices)]


def versioned_factory(writes: VersionMix) -> CodecFactory:
    """A codec factory that makes each service write its version of ``writes``."""

    def make(name: ServiceName, settings: ServiceSettings) -> Codec:
        version = writes.get(name, BASE_VERSION)
        return codec_for(settings.model_copy(update={f"produce_version_{name.produces.value}": version}))

    return make


async def run_version_matrix(
    config: MatrixConfig,
    mixes: list[dict[ServiceName, str]] | None = None,
    *,
    on_row: Callable[[VersionRow], None] | None = None,
) -> list[VersionRow]:
    """Run each version mix (all services on the Pydantic path) against the all-legacy baseline.

    With ``config.keep`` each mix's own run stays (:attr:`VersionRow.kept_prefix`); its
    baseline, the same all-legacy run every time and reported nowhere, is removed."""
    rows = []
    for writes in mixes if mixes is not None else version_mixes():
        report = await run_matrix(
            replace(config, mixes=[_ALL_PYDANTIC], faults=(), codec_factory=versioned_factory(writes))
        )
        baseline = report.baseline.run
        if baseline is not None and baseline.workspace is not None:
            await baseline.workspace.clean()
        (row,) = report.rows
        problems = list(report.baseline.verdict.problems) + list(row.verdict.problems)
        out = VersionRow({s.value: v for s, v in writes.items()}, report.ok, row.verdict.summary, problems)
        if config.keep and row.run is not None and row.run.workspace is not None:
            space = out.workspace = row.run.workspace
            out.kept_prefix = space.keys.prefix
            out.kept_store = str(space.sqlite_file) if space.sqlite_file else f"schema {space.schema}"
        rows.append(out)
        if on_row is not None:
            on_row(out)
    return rows
