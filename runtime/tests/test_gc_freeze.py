"""A service's start-up objects are frozen out of the collector's walks; what it makes after
start-up is still collected."""

from __future__ import annotations

import gc
import weakref

from runtime import server


class _Node:
    other: _Node | None = None


def test_start_up_objects_are_frozen_and_later_garbage_cycles_are_still_collected() -> None:
    gc.unfreeze()
    try:
        start_up = [{"n": n} for n in range(1_000)]
        server.freeze_start_up_objects()
        assert gc.get_freeze_count() >= len(start_up)
        first, second = _Node(), _Node()
        first.other, second.other = second, first
        alive = weakref.ref(first)
        del first, second
        gc.collect()
        assert alive() is None, "a reference cycle made after start-up was not collected"
    finally:
        gc.unfreeze()
