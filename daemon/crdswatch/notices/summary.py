"""Raw context changes -> human facts per instrument and reference type (pure)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

from crdswatch.contexts.keywords import keyword
from crdswatch.model import ActivationDiff, Change, FileInfo
from crdswatch.notices.memo import DIFFS, SECTIONS, IdentityMemo
from crdswatch.notices.summary_notes import Note, is_special, mapping_note, pipeline_note

__all__ = [
    "EventKind",
    "FileEvent",
    "ModeChange",
    "Note",
    "Section",
    "Summary",
    "is_special",
    "summarise",
    "summarise_changes",
]

EventKind = Literal[
    "new", "replaced", "removed", "modes changed", "rule added", "rule removed", "now N/A", "no longer N/A"
]
Direction = Literal["widened", "narrowed", "changed"]
# Match values that mean "any value": a rule moving to one of them matches more exposures.
_WILDCARDS = frozenset({"ANY", "N/A"})


@dataclass(frozen=True)
class ModeChange:
    """One match parameter of a rule that changed: `was` -> `now`, with the values gained and lost."""

    parameter: str
    was: str
    now: str
    gained: tuple[str, ...]
    lost: tuple[str, ...]

    @property
    def direction(self) -> Direction:
        if self.parameter == "USEAFTER":
            return "changed"
        if self.now in _WILDCARDS and self.was not in _WILDCARDS:
            return "widened"
        if self.was in _WILDCARDS and self.now not in _WILDCARDS:
            return "narrowed"
        if self.gained and not self.lost:
            return "widened"
        if self.lost and not self.gained:
            return "narrowed"
        return "changed"

    def to_json(self) -> dict[str, Any]:
        return {"parameter": self.parameter, "was": self.was, "now": self.now,
                "gained": list(self.gained), "lost": list(self.lost), "direction": self.direction}


@dataclass(frozen=True)
class FileEvent:
    """What happened to one file (or N/A entry) under one rule of one rmap."""

    kind: EventKind
    file: str
    useafter: str | None
    modes: dict[str, str]  # match parameter (FITS keyword) -> value, as the rule now (or last) reads
    rmaps: tuple[str, str]  # old and new rmap: the evidence
    old_file: str | None = None
    old_useafter: str | None = None
    mode_changes: tuple[ModeChange, ...] = ()
    info: FileInfo | None = None
    lines: tuple[str, ...] = ()  # the crds diff lines this event stands for
    detail: str | None = None  # e.g. what replaced a file when it was not another file

    @property
    def direction(self) -> Direction | None:
        if self.kind != "modes changed":
            return None
        found = {m.direction for m in self.mode_changes}
        return found.pop() if len(found) == 1 else "changed"

    @property
    def not_applicable(self) -> bool:
        return is_special(self.file)

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind, "file": self.file, "useafter": self.useafter, "modes": dict(self.modes),
            "old_file": self.old_file, "old_useafter": self.old_useafter, "direction": self.direction,
            "mode_changes": [m.to_json() for m in self.mode_changes], "rmaps": list(self.rmaps),
            "catalog": self.info.to_json() if self.info else None, "lines": list(self.lines),
            "detail": self.detail,
        }


@dataclass(frozen=True)
class Section:
    """Everything that changed for one instrument and reference type."""

    instrument: str
    reftype: str
    old_rmap: str | None
    new_rmap: str | None
    events: tuple[FileEvent, ...] = ()
    notes: tuple[Note, ...] = ()

    @cached_property  # sections are shared by the notices of one activation: counted once
    def new_files(self) -> tuple[str, ...]:
        """Distinct files this section delivers (new, or the new side of a replacement)."""
        # A file that left some rule of the same rmap is an old file moving, not a delivery.
        gone = {e.file for e in self.events if e.kind in ("removed", "rule removed", "modes changed")}
        gone |= {e.old_file for e in self.events if e.old_file}
        return tuple(dict.fromkeys(e.file for e in self.events if e.kind in ("new", "replaced", "no longer N/A")
                                   and not is_special(e.file) and e.file not in gone))

    @cached_property
    def tally(self) -> tuple[int, int, int]:
        """Rules widened, rules narrowed, files removed."""
        directions = [e.direction for e in self.events]
        return (directions.count("widened"), directions.count("narrowed"),
                sum(1 for e in self.events if e.kind == "removed"))

    def to_json(self) -> dict[str, Any]:
        return {"instrument": self.instrument, "reftype": self.reftype, "old_rmap": self.old_rmap,
                "new_rmap": self.new_rmap, "events": [e.to_json() for e in self.events],
                "notes": [n.to_json() for n in self.notes]}


@dataclass(frozen=True)
class Summary:
    """The facts of one activation, sections sorted by instrument then reference type."""

    sections: tuple[Section, ...]
    notes: tuple[Note, ...] = ()  # context level: instruments added or removed, pmap headers

    @property
    def events(self) -> tuple[FileEvent, ...]:
        return tuple(e for s in self.sections for e in s.events)

    @property
    def new_files(self) -> tuple[str, ...]:
        """Distinct files delivered with this activation (new, or the new side of a replacement)."""
        return tuple(dict.fromkeys(f for section in self.sections for f in section.new_files))

    @property
    def files(self) -> tuple[str, ...]:
        """Every real file named by any event, old or new, in order of first mention."""
        seen: dict[str, None] = {}
        for e in self.events:
            for name in (e.file, e.old_file):
                if name and not is_special(name):
                    seen[name] = None
        return tuple(seen)

    def count(self, direction: Direction) -> int:
        return sum(1 for e in self.events if e.direction == direction)

    @property
    def structural(self) -> bool:
        return any(n.prominent for s in self.sections for n in s.notes) or any(n.prominent for n in self.notes)

    def affected(self) -> dict[str, list[str]]:
        """Instrument -> reference types touched, both in section order."""
        out: dict[str, list[str]] = {}
        for s in self.sections:
            out.setdefault(s.instrument, []).append(s.reftype)
        return out


# Summaries made lately, by the identity of their diff: rows with the same selection of one
# activation share one ActivationDiff (app.outbox_notices), so the notices of its subscribers,
# which differ in their "why" lines only, group its changes and look up its sections once (565
# diffs for the 777 notices of bench/replay_history.py).
_SUMMARIES: IdentityMemo[Summary] = IdentityMemo(DIFFS)


def summarise(diff: ActivationDiff) -> Summary:
    return _SUMMARIES.get((diff,), None, lambda: summarise_changes(diff.changes, diff.catalog))


def summarise_changes(changes: Sequence[Change], catalog: Mapping[str, FileInfo] | None = None) -> Summary:
    """Group `changes` per (instrument, reference type) and turn each group into events and notes."""
    catalog = catalog or {}
    groups: dict[tuple[str, str], list[Change]] = {}
    context_notes: list[Note] = []
    for change in changes:
        if change.level == "pipeline":
            note = pipeline_note(change)
            if note is not None:
                context_notes.append(note)
            continue
        key = ((change.instrument or "").lower(), (change.reftype or "").lower())
        groups.setdefault(key, []).append(change)
    sections = tuple(_shared_section(inst, ref, groups[(inst, ref)], catalog) for inst, ref in sorted(groups))
    return Summary(sections, tuple(context_notes))


# Sections summarised lately, by the identity of their changes and of the catalog facts they read:
# the subscribers of one activation whose selections share a section get the same one.
_SECTIONS: IdentityMemo[Section] = IdentityMemo(SECTIONS)


def _shared_section(instrument: str, reftype: str, changes: list[Change], catalog: Mapping[str, FileInfo]) -> Section:
    # Every catalog lookup _section can make (a file named by none is looked up as "?").
    infos = tuple(catalog.get(name or "?") for c in changes for name in (c.old_file, c.new_file))
    return _SECTIONS.get((*changes, *infos), (instrument, reftype),
                         lambda: _section(instrument, reftype, changes, catalog))


# ---------------------------------------------------------------- one instrument + reference type


@dataclass
class _Pool:
    """Deleted and added rules of one rmap, before pairing."""

    deleted: list[Change] = field(default_factory=list)
    added: list[Change] = field(default_factory=list)


def _section(instrument: str, reftype: str, changes: list[Change], catalog: Mapping[str, FileInfo]) -> Section:
    rules = [c for c in changes if c.level == "reference"]
    notes = [n for c in changes for n in [mapping_note(c)] if n is not None]
    old_rmap, new_rmap = _rmaps(changes)
    events = _events(rules, catalog)
    if not events and not notes:
        # The rmap changed, but only in ways crds diff calls routine (name, sha1sum, ...).
        notes.append(Note("rmap updated", "rmap updated; no rule changed", False,
                          next((c.line for c in changes), "")))
    return Section(instrument, reftype, old_rmap, new_rmap, tuple(events), tuple(notes))


def _rmaps(changes: list[Change]) -> tuple[str | None, str | None]:
    for c in changes:
        if c.level == "reference":
            return c.old_mapping, c.new_mapping
    for c in changes:
        if c.level == "instrument":
            old = c.old_file if c.old_file and c.old_file.endswith(".rmap") else None
            new = c.new_file if c.new_file and c.new_file.endswith(".rmap") else None
            return old, new
    return None, None


def _events(rules: list[Change], catalog: Mapping[str, FileInfo]) -> list[FileEvent]:
    pool = _Pool([c for c in rules if c.action == "deleted"], [c for c in rules if c.action == "added"])
    olds = {c.old_file for c in rules if c.action in ("deleted", "replaced")}
    news = {c.new_file for c in rules if c.action in ("added", "replaced")}
    pairs = _pair(pool)
    paired_del = {id(d) for d, _ in pairs.values()}
    out: list[FileEvent] = []
    for c in rules:
        if c.action == "replaced":
            out.append(_replaced(c, catalog))
        elif c.action == "added" and id(c) in pairs:
            out.append(_moved(*pairs[id(c)], catalog))
        elif c.action == "added":
            kind: EventKind = "now N/A" if is_special(c.new_file) else "rule added" if c.new_file in olds else "new"
            out.append(_event(kind, c, c.new_file, catalog))
        elif c.action == "deleted" and id(c) not in paired_del:
            kind = "no longer N/A" if is_special(c.old_file) else "rule removed" if c.old_file in news else "removed"
            out.append(_event(kind, c, c.old_file, catalog))
    return out


def _pair(pool: _Pool) -> dict[int, tuple[Change, Change]]:
    """Match each added rule with a deleted rule of the same file: same USEAFTER first, then the
    rule whose match values agree most. Returns {id(added): (deleted, added)}."""
    free: dict[str | None, list[Change]] = {}
    for d in pool.deleted:
        free.setdefault(d.old_file, []).append(d)
    pairs: dict[int, tuple[Change, Change]] = {}
    for a in pool.added:
        candidates = free.get(a.new_file)
        if not candidates:
            continue
        best = max(candidates, key=lambda d: (d.useafter == a.useafter, _agreement(d, a)))
        if is_special(a.new_file) and best.useafter != a.useafter:
            continue  # N/A entries are interchangeable; only pair them when the dates agree
        candidates.remove(best)
        pairs[id(a)] = (best, a)
    return pairs


def _agreement(a: Change, b: Change) -> int:
    mine, theirs = _modes(a), _modes(b)
    return sum(1 for k, v in mine.items() if theirs.get(k) == v)


def _modes(change: Change) -> dict[str, str]:
    return {keyword(p): v for p, v in zip(change.parameters, change.match)}


def _info(name: str | None, catalog: Mapping[str, FileInfo]) -> FileInfo | None:
    return catalog.get(name) if name and not is_special(name) else None


def _event(kind: EventKind, c: Change, name: str | None, catalog: Mapping[str, FileInfo]) -> FileEvent:
    file = name or "?"
    return FileEvent(kind, file, c.useafter, _modes(c), (c.old_mapping, c.new_mapping),
                     info=_info(file, catalog), lines=(c.line,))


def _replaced(c: Change, catalog: Mapping[str, FileInfo]) -> FileEvent:
    if c.new_file is None:
        # A file replaced by a nested selector (e.g. USEAFTER rules): crds diff does not list the
        # nested files, so the fact is that this file left the rule.
        by = c.line.rsplit(" with ", 1)[-1]
        return FileEvent("removed", c.old_file or "?", c.useafter, _modes(c), (c.old_mapping, c.new_mapping),
                         info=_info(c.old_file, catalog), lines=(c.line,), detail=f"replaced by {by}")
    new = c.new_file
    kind: EventKind = "now N/A" if is_special(new) else "no longer N/A" if is_special(c.old_file) else "replaced"
    return FileEvent(kind, new, c.useafter, _modes(c), (c.old_mapping, c.new_mapping), old_file=c.old_file,
                     info=_info(new, catalog), lines=(c.line,))


def _moved(deleted: Change, added: Change, catalog: Mapping[str, FileInfo]) -> FileEvent:
    was, now = _modes(deleted), _modes(added)
    changes = [_mode_change(k, was.get(k, ""), now.get(k, "")) for k in dict.fromkeys([*was, *now])]
    if deleted.useafter != added.useafter:
        changes.append(_mode_change("USEAFTER", deleted.useafter or "", added.useafter or ""))
    file = added.new_file or "?"
    return FileEvent(
        "modes changed", file, added.useafter, now, (added.old_mapping, added.new_mapping),
        old_useafter=deleted.useafter if deleted.useafter != added.useafter else None,
        mode_changes=tuple(m for m in changes if m.was != m.now), info=_info(file, catalog),
        lines=(deleted.line, added.line),
    )


def _mode_change(parameter: str, was: str, now: str) -> ModeChange:
    before, after = _values(was), _values(now)
    return ModeChange(parameter, was, now, tuple(v for v in after if v not in before),
                      tuple(v for v in before if v not in after))


def _values(text: str) -> list[str]:
    return [v for v in text.split("|") if v] if text else []
