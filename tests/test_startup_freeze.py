"""A running service keeps what existed once it was set up out of the garbage collector's full
passes (cdb.launcher.startup_objects_frozen), never live data, and hands it back at the stop."""

from __future__ import annotations

import gc

from cdb.launcher import startup_objects_frozen


class _Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the collector can free it


def _tracked(node: _Node) -> bool:
    return any(obj is node for obj in gc.get_objects())


def test_startup_objects_frozen__objects_alive_at_start_leave_the_passes_until_the_stop() -> None:
    kept = [_Node() for _ in range(100)]
    with startup_objects_frozen() as frozen:
        assert frozen >= len(kept)
        assert gc.get_freeze_count() >= len(kept)
        assert not _tracked(kept[0])
    assert gc.get_freeze_count() == 0
    assert _tracked(kept[0])


def test_startup_objects_frozen__start_up_garbage_is_collected_not_frozen() -> None:
    collected: list[int] = []

    def note(phase: str, info: dict[str, int]) -> None:
        if phase == "stop":
            collected.append(info["collected"])

    for _ in range(50):
        _Node()  # garbage: a cycle nobody references
    gc.callbacks.append(note)
    try:
        with startup_objects_frozen():
            pass
    finally:
        gc.callbacks.remove(note)
    assert sum(collected) >= 50


def test_startup_objects_frozen__objects_made_while_running_are_still_collected() -> None:
    with startup_objects_frozen():
        for _ in range(50):
            _Node()
        assert gc.collect() >= 50
