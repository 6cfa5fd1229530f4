"""A service freezes what exists once it is set up (cdb.launcher.freeze_startup_objects): the
garbage collector's full passes then skip the process's start-up objects, never live data."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from cdb.launcher import freeze_startup_objects


@pytest.fixture
def unfrozen_after() -> Iterator[None]:
    yield
    gc.unfreeze()  # the test process is not a service: give its objects back to the collector


class _Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the collector can free it


def test_freeze_startup_objects__objects_alive_at_start_leave_the_collectors_passes(
    unfrozen_after: None,
) -> None:
    kept = [_Node() for _ in range(100)]
    frozen = freeze_startup_objects()
    assert frozen >= len(kept)
    assert gc.get_freeze_count() == frozen
    assert not any(any(obj is node for obj in gc.get_objects()) for node in kept[:3])


def test_freeze_startup_objects__start_up_garbage_is_collected_not_frozen(unfrozen_after: None) -> None:
    collected: list[int] = []

    def note(phase: str, info: dict[str, int]) -> None:
        if phase == "stop":
            collected.append(info["collected"])

    for _ in range(50):
        _Node()  # garbage: a cycle nobody references
    gc.callbacks.append(note)
    try:
        freeze_startup_objects()
    finally:
        gc.callbacks.remove(note)
    assert sum(collected) >= 50


def test_freeze_startup_objects__objects_made_after_are_still_collected(unfrozen_after: None) -> None:
    freeze_startup_objects()
    for _ in range(50):
        _Node()
    assert gc.collect() >= 50
