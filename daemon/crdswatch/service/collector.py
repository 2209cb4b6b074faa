"""The cyclic garbage collector, settled once the daemon has started (and by the benchmarks, which
measure the daemon as its start-up leaves it)."""

from __future__ import annotations

import gc

__all__ = ["FULL_EVERY", "settle_collector"]

# Full collections only after this many collections of the middle generation (Python's default: 10).
FULL_EVERY = 100


def settle_collector() -> None:
    """Freeze what start-up built and make full collections ten times rarer.

    Everything imported and configured by now lives as long as the process: out of the collector's
    sight, a full collection during a 10,000-row fan-out pauses the loop for tens of milliseconds
    instead of hundreds (it rescanned every module, model and template).

    Python skips a full collection while the objects that survived the last one outnumber the new
    ones four to one; frozen objects are not counted, so after the freeze nearly every tenth
    middle-generation collection was a full one. A backfill holds the ~1,300 mappings it parsed
    until it ends, and each full collection walked them all: 3-5 of them were 0.05-0.17 s of the
    replay's CPU (bench/replay_history.py), none with FULL_EVERY = 100. Cyclic garbage that reaches
    the oldest generation is collected later, not never; the young generations are as before.
    """
    gc.freeze()
    young, middle, _full = gc.get_threshold()
    gc.set_threshold(young, middle, FULL_EVERY)
