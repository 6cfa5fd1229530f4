"""The transport benchmark rewrites only its own section of BENCHMARKS.md."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis.asyncio as aioredis

from bench.throughput import fence_jobs
from bench.transport import SECTION, write_section
from core.topics import KeySpace, ServiceName, Topic


def test_write_section__replaces_only_the_transport_section(tmp_path: Path) -> None:
    target = tmp_path / "BENCHMARKS.md"
    target.write_text(
        "# Benchmarks\n\n## Codec\n\ncodec table\n\n"
        f"{SECTION}\n\nold numbers\n\n## Pipeline\n\npipeline table\n",
        encoding="utf-8",
    )

    write_section(f"{SECTION}\n\nnew numbers\n", target)

    text = target.read_text(encoding="utf-8")
    assert "old numbers" not in text
    assert text.index("## Codec") < text.index("new numbers") < text.index("## Pipeline")
    assert "codec table" in text
    assert "pipeline table" in text


def test_write_section__appends_when_the_file_has_no_transport_section(tmp_path: Path) -> None:
    target = tmp_path / "BENCHMARKS.md"
    target.write_text("# Benchmarks\n\n## Codec\n\ncodec table\n", encoding="utf-8")

    write_section(f"{SECTION}\n\nnew numbers\n", target)

    assert target.read_text(encoding="utf-8").endswith(f"codec table\n\n{SECTION}\n\nnew numbers\n")


@pytest.mark.integration
async def test_fence_rows__each_reads_the_whole_stream_the_fenced_ones_through_the_lease(
    redis_async: aioredis.Redis, keys: KeySpace
) -> None:
    """The rows pricing fencing (bench.throughput.fence_jobs) read what they filled, and the
    fenced rows really hold the partition lease (so the script, not a plain read, was timed)."""
    jobs = fence_jobs(redis_async, 200)
    for name, job in jobs.items():
        space = KeySpace(f"{keys.prefix}{name}:")
        assert await job(space) > 0
        stream, group = space.stream(Topic.MARKET_DATA), space.group(ServiceName.SIGNAL)
        (info,) = await redis_async.xinfo_groups(stream)
        assert info["entries-read"] == await redis_async.xlen(stream), name
        lease = await redis_async.get(space.lease(ServiceName.SIGNAL, 0))
        assert (lease == b"bench") == name.endswith("fenced"), name
        assert group.encode() == info["name"]
