"""A small bounded memo of pure functions, keyed by the identity of the objects they read (pure).

The notices of one activation to many subscribers share most of their parts: the drain hands
every notice the same decoded `Change` objects, so a section two selections both contain is the
same changes, summarised, viewed and rendered once. Identity, not value, is the key because these
values are large (hashing a section's events by value costs about what summarising them does)
and some hold dicts; an entry keeps its objects alive, so no id in a key can be reused while the
entry is there. Results must be immutable: every caller with the same key gets the very same one.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

__all__ = ["DIFFS", "SECTIONS", "IdentityMemo"]

# How many entries the memos of one drain keep: per activation as one selection sees it (its
# summary, its headline), and per section (summarised, viewed, rendered as text and as HTML).
# A drain holds up to 600 rows (app.drain), whose notices its lanes render one per subscriber at
# a time: a subscriber with few notices reaches the last activations of a backlog while another
# is still at its first, so the notices of one activation's subscribers are rendered far apart.
# At 512 sections the replay (bench/replay_history.py: 777 notices, 1,076 sections) made 1,548
# section views and rendered each as text and HTML, where 1,301 do; all of them kept cost ~4 MB.
DIFFS = 1024
SECTIONS = 4096

V = TypeVar("V")


class IdentityMemo(Generic[V]):
    """`make()`'s result per (identity of `objects`, `values`); the oldest entries go beyond `limit`."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._entries: dict[tuple[tuple[int, ...], Hashable], tuple[tuple[object, ...], V]] = {}

    def get(self, objects: tuple[object, ...], values: Hashable, make: Callable[[], V]) -> V:
        key = (tuple(map(id, objects)), values)
        entry = self._entries.get(key)
        if entry is not None:
            return entry[1]
        result = make()
        while len(self._entries) >= self.limit:
            with contextlib.suppress(KeyError, RuntimeError, StopIteration):  # another thread evicted it first
                del self._entries[next(iter(self._entries))]
        self._entries[key] = (objects, result)
        return result

    def __len__(self) -> int:
        return len(self._entries)
