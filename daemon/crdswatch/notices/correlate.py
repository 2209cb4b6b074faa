"""Tie upstream posts to CRDS activations by the names both mention (pure)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from crdswatch.model import ActivationDiff
from crdswatch.notices.codec import record_changes
from crdswatch.notices.upstream import References

__all__ = ["Correlation", "SeenNames", "correlate", "names_from_record", "names_of"]


@dataclass(frozen=True)
class SeenNames:
    """What one seen activation made active: its context, new mappings and new reference files."""

    context: str
    date: str
    names: frozenset[str]


@dataclass(frozen=True)
class Correlation:
    """Which seen activations a post's names are in, and which names no seen activation has."""

    found: tuple[tuple[SeenNames, tuple[str, ...]], ...]
    not_active: tuple[str, ...]

    @property
    def contexts(self) -> tuple[str, ...]:
        return tuple(seen.context for seen, _ in self.found)


def names_of(diff: ActivationDiff) -> SeenNames:
    names = {diff.activation.context.lower()}
    for change in diff.changes:
        names.update(n.lower() for n in (change.new_mapping, change.new_file) if n)
    return SeenNames(diff.activation.context, diff.activation.date, frozenset(names))


def names_from_record(context: str, date: str, diff: dict[str, Any] | None) -> SeenNames:
    """The same from a stored seen activation (its diff record as the poll wrote it)."""
    names = {context.lower()}
    for change in record_changes(diff):
        names.update(n.lower() for n in (change.new_mapping, change.new_file) if n)
    return SeenNames(context, date, frozenset(names))


def correlate(refs: References, seen: Iterable[SeenNames]) -> Correlation:
    """Newest activation first. Tickets do not correlate: CRDS does not record them per file."""
    wanted = refs.names()
    found: list[tuple[SeenNames, tuple[str, ...]]] = []
    matched: set[str] = set()
    for item in sorted(seen, key=lambda s: s.date, reverse=True):
        hits = tuple(name for name in wanted if name in item.names)
        if hits:
            found.append((item, hits))
            matched.update(hits)
    # A named context that was never activated is "not active" as much as a file is.
    return Correlation(tuple(found), tuple(name for name in wanted if name not in matched))
