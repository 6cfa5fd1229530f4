"""The collector settings a service runs with (services.runtime.service_gc)."""

from __future__ import annotations

import gc

from services.runtime import GC_THRESHOLD, service_gc


def test_service_gc__freezes_start_up_objects_and_raises_the_threshold_then_restores_both() -> None:
    before_threshold, before_frozen = gc.get_threshold(), gc.get_freeze_count()
    start_up = [object() for _ in range(3)], {"kept": [1, 2]}  # tracked containers alive at entry
    with service_gc():
        assert gc.get_threshold() == GC_THRESHOLD
        assert gc.get_freeze_count() > before_frozen  # start-up's objects left the passes
        made_inside: list[object] = []
        made_inside.append(made_inside)  # a cycle made while the service runs ...
        assert gc.is_tracked(made_inside)
        del made_inside
        assert gc.collect() >= 1  # ... is still found and freed
    assert gc.get_threshold() == before_threshold
    assert gc.get_freeze_count() == before_frozen == 0
    assert start_up[1]["kept"] == [1, 2]


def test_service_gc__inside_an_enclosing_freeze_leaves_it_frozen() -> None:
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        with service_gc():
            pass
        assert gc.get_freeze_count() >= frozen > 0  # not thawed under the enclosing freeze
    finally:
        gc.unfreeze()
