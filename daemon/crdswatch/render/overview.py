"""A digest's overview: one row per activation — when, which instruments, how many files (pure)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from crdswatch.contexts.history import parse_history_date
from crdswatch.model import ActivationDiff
from crdswatch.notices.summary import Summary
from crdswatch.render.common import clean_text, instrument_name

__all__ = ["OVERVIEW_COLUMNS", "OverviewRow", "overview_row"]

OVERVIEW_COLUMNS = ("activation", "date", "instruments", "new", "replaced", "removed", "other")


@dataclass(frozen=True)
class OverviewRow:
    context: str
    date: str  # YYYY-MM-DD
    instruments: tuple[str, ...]
    new: int  # files delivered
    replaced: int  # files replaced by others (counted once per rule)
    removed: int  # files no longer selected
    other: int  # rules whose modes or N/A status changed, mapping-only changes
    archive_url: str | None

    def cells(self, instruments_width: int) -> tuple[str, ...]:
        names = ", ".join(self.instruments) or "(context)"
        if len(names) > instruments_width:
            names = f"{len(self.instruments)} instruments"
        return (self.context, self.date, names, str(self.new), str(self.replaced), str(self.removed),
                str(self.other))


def _day(text: str) -> str:
    try:
        return parse_history_date(text).strftime("%Y-%m-%d")
    except ValueError:
        return clean_text(text)[:10] or "unknown"


def overview_row(diff: ActivationDiff, summary: Summary, public: str | None) -> OverviewRow:
    kinds = Counter(e.kind for e in summary.events)
    instruments = tuple(dict.fromkeys(instrument_name(s.instrument) for s in summary.sections if s.instrument))
    context = clean_text(diff.activation.context)
    new = len(summary.new_files)
    replaced, removed = kinds["replaced"], kinds["removed"]
    notes = sum(1 for s in summary.sections if not s.events) + len(summary.notes)
    other = sum(n for kind, n in kinds.items() if kind not in ("new", "replaced", "removed")) + notes
    return OverviewRow(context, _day(diff.activation.date), instruments, new, replaced, removed, other,
                       f"{public}/activations/{context}" if public else None)
