"""The cyclic garbage collector, set for a long-running learning loop.

The event path makes and frees tens of thousands of small containers a second (records,
events, pending rows), nearly all of them freed at once by reference counting. With the
default threshold the collector still runs every 700 net allocations and walks the young
objects each time: about 1% of the worker's time, for garbage that is almost never there.
Once the process has built what it keeps (modules, the model, the clients), those objects
are frozen out of the collector's sight and the young generation is collected less often;
cyclic garbage is still collected, later.
"""

from __future__ import annotations

import gc

#: young-generation threshold for the learning loop (the interpreter's default is 700)
YOUNG_THRESHOLD = 20_000


def settle() -> tuple[int, int, int]:
    """Freeze what the process holds now and raise the young threshold; return the
    thresholds before, for ``restore``."""
    before = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, before[1], before[2])
    return before


def restore(before: tuple[int, int, int]) -> None:
    """Undo ``settle`` (for a process that goes on to do other work, as the benches do)."""
    gc.unfreeze()
    gc.set_threshold(*before)
