"""The transport benchmark rewrites only its own section of BENCHMARKS.md."""

from __future__ import annotations

from pathlib import Path

from bench.transport import SECTION, write_section


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
