"""The collector settings of the learning loop, and their undoing."""

from __future__ import annotations

import gc

from stream.runtime import collector


def test_settle_freezes_what_is_held_raises_the_young_threshold_and_restore_undoes_it():
    kept = [[i] for i in range(1000)]
    before = gc.get_threshold()
    frozen_before = gc.get_freeze_count()
    settled = collector.settle()
    try:
        assert settled == before
        assert gc.get_threshold() == (collector.YOUNG_THRESHOLD, before[1], before[2])
        assert gc.get_freeze_count() >= frozen_before + len(kept)
        # cyclic garbage is still found, only later
        cycle: list = []
        cycle.append(cycle)
        del cycle
        assert gc.collect() >= 1
    finally:
        collector.restore(settled)
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0
