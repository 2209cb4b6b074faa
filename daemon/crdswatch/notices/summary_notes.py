"""Notes for changes that are not about one file: rmap structure, headers, types and instruments."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from crdswatch.contexts.keywords import keyword
from crdswatch.contexts.mappings import SPECIAL_VALUES
from crdswatch.model import Change

__all__ = ["Note", "NoteKind", "is_special", "mapping_note", "pipeline_note"]

NoteKind = Literal[
    "structure", "header", "rmap updated", "reftype added", "reftype removed", "reftype N/A",
    "instrument added", "instrument removed", "context",
]
# Header keys whose change alters which exposures a file is selected for, not just bookkeeping.
_STRUCTURAL_KEYS = frozenset({"parkey", "classes", "substitutions", "rmap_relevance", "extra_keys"})


def is_special(name: str | None) -> bool:
    """N/A, OMIT and friends: not a file, a statement that the step or type does not apply."""
    return name is not None and name in SPECIAL_VALUES


@dataclass(frozen=True)
class Note:
    """A change that is not about one file: structure, headers, types added or set to N/A."""

    kind: NoteKind
    text: str
    prominent: bool
    line: str  # the crds diff line it comes from

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "text": self.text, "prominent": self.prominent, "line": self.line}


def mapping_note(c: Change) -> Note | None:
    if c.level == "reference":
        if c.action == "parameters":
            was = ", ".join(keyword(p) for p in c.old_value or ())
            now = ", ".join(keyword(p) for p in c.new_value or ())
            return Note("structure", f"match parameters changed: ({was}) -> ({now}); this changes which "
                        "exposures the files apply to", True, c.line)
        if c.action == "classes":
            return Note("structure", f"rule structure changed: {c.old_value} -> {c.new_value}", True, c.line)
        if c.action == "header":
            return _header_note(c)
        return None
    if c.level != "instrument":
        return None
    return _reftype_note(c)


def _header_note(c: Change) -> Note:
    if c.key == "parkey":
        return Note("structure", f"parameter list (parkey) changed: {_parkey(c.old_value)} -> "
                    f"{_parkey(c.new_value)}; this changes which exposures the files apply to", True, c.line)
    prominent = c.key in _STRUCTURAL_KEYS
    verb = "added" if c.old_value is None else "removed" if c.new_value is None else "changed"
    return Note("structure" if prominent else "header", f"rmap header {c.key!r} {verb}", prominent, c.line)


def _parkey(value: Any) -> str:
    if not isinstance(value, (tuple, list)):
        return str(value)
    groups = [g if isinstance(g, (tuple, list)) else (g,) for g in value]
    return " + ".join("(" + ", ".join(keyword(str(p)) for p in g) + ")" for g in groups)


def _reftype_note(c: Change) -> Note | None:
    ref = (c.reftype or "").upper()
    if c.action == "header":
        return Note("header", f"instrument mapping header {c.key!r} changed", False, c.line)
    if c.action == "replaced" and not is_special(c.old_file) and not is_special(c.new_file):
        return None  # an ordinary rmap update: its rules say what changed
    # A deletion first: its old file may be N/A too, and the entry is gone, not added.
    if c.action == "deleted":
        if is_special(c.old_file):
            return Note("reftype removed", f"{ref} {c.old_file} entry removed", False, c.line)
        return Note("reftype removed", f"reference type {ref} removed (was {c.old_file})", True, c.line)
    if is_special(c.new_file):
        return Note("reftype N/A", f"{ref} set to {c.new_file}: the step no longer uses a reference "
                    "file of this type for this instrument", True, c.line)
    # What is left (an instrument mapping's changes are added, deleted, replaced or header): a
    # type added, or replaced from N/A by a file, which is the same news.
    return Note("reftype added", f"reference type {ref} added ({c.new_file})", True, c.line)


def pipeline_note(c: Change) -> Note | None:
    inst = (c.instrument or "").upper()
    if c.action == "added":
        return Note("instrument added", f"instrument {inst} added ({c.new_file})", True, c.line)
    if c.action == "deleted":
        return Note("instrument removed", f"instrument {inst} removed (was {c.old_file})", True, c.line)
    if c.action == "header":
        return Note("context", f"context header {c.key!r} changed", c.key == "parkey", c.line)
    return None  # imap replaced: its own changes are listed
