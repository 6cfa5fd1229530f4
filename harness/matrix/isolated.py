"""One mix run in isolation: a fresh key prefix and database schema, cleaned afterwards.

Used by the matrix for every row and by the pytest plugin (:mod:`harness.testing`)
for engineers' own mixed-version tests. Returns what the run published (per topic,
decoded), stored (database rows) and dead-lettered (per topic, with errors).
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.codec import build_codec
from core.errors import ContractError
from core.redis import DeadLetter, DeadLetters
from core.redis.connection import open_target
from core.redis.modes import AsyncClient, RedisTarget
from core.settings import ServiceSettings
from core.topics import CodecPath, KeySpace, ServiceName, Topic
from core.versions.codec import VersionedCodec
from harness.local_redis import LocalRedisServer
from harness.matrix.faults import Fault, FaultHook, make_hooks
from harness.matrix.inputs import InputSet, MixedInputs
from harness.matrix.mixes import Mix
from services.execution.store import PostgresStore, ResultStore, SqliteStore
from services.pipeline import PipelineResult, read_stream, run_pipeline
from services.pipeline_control import CodecFactory
from services.ws.trades import Trade

__all__ = ["MixRun", "Workspace", "mix_settings", "run_mix"]

_DLQ_READ_LIMIT = 100_000


@dataclass
class Workspace:
    """Where one run lives (key prefix, schema or SQLite file, own Redis) and how to remove it."""

    keys: KeySpace
    redis_url: str
    database_url: str | None
    schema: str
    sqlite_dir: Path | None = None
    server: LocalRedisServer | None = None
    target: RedisTarget | None = None
    """How to reach ``redis_url`` (mode, Sentinels); ``None``: detect the mode from the URL."""

    async def connect(self) -> AsyncClient:
        """A client of the run's Redis, in its mode (a cluster, a Sentinel-watched primary)."""
        target = self.target or RedisTarget(self.redis_url)
        return await open_target(RedisTarget(self.redis_url, target.mode, target.sentinels, target.master))

    @property
    def sqlite_file(self) -> Path | None:
        """The run's SQLite file when it has no PostgreSQL."""
        return None if self.sqlite_dir is None else self.sqlite_dir / f"{self.schema}.sqlite3"

    def store(self) -> ResultStore:
        """The run's result store: its own PostgreSQL schema, or its own SQLite file."""
        if self.database_url:
            return PostgresStore(self.database_url, schema=self.schema)
        assert self.sqlite_file is not None
        return SqliteStore(self.sqlite_file)

    async def clean(self) -> None:
        """Delete the run's keys, drop its schema or file, stop its own Redis."""
        if self.server is not None:
            self.server.close()  # its data goes with it
        else:
            client = await self.connect()
            try:
                found = [k async for k in client.scan_iter(match=self.keys.all_keys_pattern(), count=1000)]
                # One UNLINK per key in a non-transactional pipeline: on a cluster the keys live
                # in different slots, and a multi-key UNLINK across slots is refused.
                for start in range(0, len(found), 1000):
                    pipe = client.pipeline(transaction=False)
                    for key in found[start : start + 1000]:
                        pipe.execute_command("UNLINK", key)
                    await pipe.execute()
            finally:
                await client.aclose()
        if self.database_url:
            store = PostgresStore(self.database_url, schema=self.schema)
            try:
                await store.drop_schema()
            finally:
                await store.close()
        if self.sqlite_dir is not None:
            shutil.rmtree(self.sqlite_dir, ignore_errors=True)


@dataclass
class MixRun:
    """What one isolated run of a mix did."""

    mix: Mix
    result: PipelineResult
    published: dict[Topic, list[dict[str, Any]]]
    """Every stream entry per topic that decodes (lenient Pydantic reader), as plain values."""
    undecodable: dict[Topic, int]
    """Stream entries per topic no reader accepts (injected malformed entries)."""
    dead_letters: dict[Topic, list[DeadLetter]]
    """Every dead letter per topic, oldest first, with its structured errors."""
    faults: list[FaultHook] = field(default_factory=list)
    workspace: Workspace | None = None
    inputs: MixedInputs | None = None
    """The injected messages (``mixed`` input set), or ``None`` for the recorded trades alone."""

    @property
    def stored(self) -> list[dict[str, Any]]:
        """The stored order-result rows (business columns), ordered by ``order_id``."""
        return self.result.stored_rows

    @property
    def order_results(self) -> list[dict[str, Any]]:
        """Business fields of every order result on the stream, in stream order."""
        return self.result.order_results


def mix_settings(
    mix: Mix,
    *,
    keys: KeySpace,
    redis_url: str,
    database_url: str | None,
    environ: Mapping[str, str] | None = None,
    block_ms: int = 20,
) -> dict[ServiceName, ServiceSettings]:
    """The settings of every service for ``mix``; the mix's flags win over the environment."""
    return {
        service: ServiceSettings.load(
            service,
            environ=environ,
            overrides={
                **mix.overrides(service),
                "contract_shadow": False,
                "key_prefix": keys.prefix,
                "redis_url": redis_url,
                "database_url": database_url,
                "instance": f"matrix-{service.value}",
                "consumer_block_ms": block_ms,
            },
        )
        for service in ServiceName
    }


async def run_mix(
    mix: Mix,
    trades: Sequence[Trade],
    *,
    redis_url: str,
    database_url: str | None = None,
    faults: Sequence[Fault] = (),
    codec_factory: CodecFactory | None = None,
    environ: Mapping[str, str] | None = None,
    keep: bool = False,
    tag: str = "",
    timeout_s: float = 60.0,
    redis_target: RedisTarget | None = None,
    inputs: InputSet = InputSet.CLEAN,
) -> MixRun:
    """Run ``mix`` on ``trades`` (plus the ``inputs`` set's messages) in its own key space and
    schema and collect what it did.

    ``redis_target`` says how to reach ``redis_url`` (REDIS_MODE, Sentinels); by default
    the mode is detected.

    With ``keep`` the keys, schema and files stay (``MixRun.workspace.clean()`` removes
    them); otherwise they are removed before returning. ``redis-restart`` runs the mix
    on a throwaway redis-server of its own.
    """
    run_id = uuid.uuid4().hex[:10]
    label = f"{tag}{mix.code.lower()}_{run_id}"
    server = await asyncio.to_thread(LocalRedisServer().start) if Fault.REDIS_RESTART in faults else None
    space = Workspace(
        keys=KeySpace(f"cdb-matrix:{label}:", ServiceSettings.load(environ=environ).topic_partitions),
        redis_url=server.url if server else redis_url,
        database_url=database_url,
        schema=f"matrix_{label}",
        sqlite_dir=None if database_url else Path(tempfile.mkdtemp(prefix="cdb-matrix-")),
        server=server,
        target=None if server else redis_target,
    )
    try:
        settings = mix_settings(
            mix, keys=space.keys, redis_url=space.redis_url, database_url=database_url, environ=environ
        )
        max_bytes = settings[ServiceName.SIGNAL].max_message_bytes
        hooks = make_hooks(faults, server=server, max_bytes=max_bytes)
        mixed = MixedInputs(max_bytes=max_bytes) if inputs is InputSet.MIXED else None
        outcome = await _execute(
            mix,
            space,
            settings,
            trades,
            hooks=hooks,
            inputs=mixed,
            codec_factory=codec_factory,
            environ=environ,
            timeout_s=timeout_s,
        )
    except BaseException:
        await space.clean()
        raise
    if keep:
        outcome.workspace = space
    else:
        await space.clean()
    return outcome


async def _execute(
    mix: Mix,
    space: Workspace,
    settings: Mapping[ServiceName, ServiceSettings],
    trades: Sequence[Trade],
    *,
    hooks: Sequence[FaultHook],
    inputs: MixedInputs | None,
    codec_factory: CodecFactory | None,
    environ: Mapping[str, str] | None,
    timeout_s: float,
) -> MixRun:
    client = await space.connect()
    store = space.store()
    try:
        result = await run_pipeline(
            client,
            settings,
            trades,
            store,
            environ=environ,
            # The inputs first: their first injection and a Redis restart fall on the same batch,
            # and the injection's plain client has no retries to outlast the restart.
            hooks=[*([inputs] if inputs else []), *hooks],
            codec_factory=codec_factory,
            ws_batch=25
            if hooks or inputs
            else 500,  # small batches give a fault or an input a mid-run moment
            timeout_s=timeout_s,
        )
        published, undecodable = await _published(client, space.keys)
        letters = DeadLetters(client, space.keys)
        dlq = {t: await letters.read(t, count=_DLQ_READ_LIMIT, newest_first=False) for t in Topic}
    finally:
        await store.close()
        await client.aclose()
    return MixRun(mix, result, published, undecodable, dlq, faults=list(hooks), inputs=inputs)


async def _published(
    client: AsyncClient, keys: KeySpace
) -> tuple[dict[Topic, list[dict[str, Any]]], dict[Topic, int]]:
    # The most tolerant reader installed (lenient while the migration is, else strict), reading
    # any declared version as v1.0: reads either path's output.
    reader = VersionedCodec(build_codec(CodecPath.PYDANTIC))
    published: dict[Topic, list[dict[str, Any]]] = {}
    undecodable: dict[Topic, int] = {}
    for topic in Topic:
        entries = await read_stream(client, keys, topic)
        published[topic], undecodable[topic] = [], 0
        for entry_id, fields in entries:
            try:
                message = reader.from_fields(topic, fields, entry_id=entry_id).message
            except ContractError:
                undecodable[topic] += 1
                continue
            published[topic].append(reader.as_dict(topic, message))
    return published, undecodable
