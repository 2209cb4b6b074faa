"""One section's tables: what happened to each file, as rows of named cells (pure)."""

from __future__ import annotations

import functools
from collections import Counter
from dataclasses import dataclass

from crdswatch.contexts.history import parse_history_date
from crdswatch.notices.summary import FileEvent, is_special
from crdswatch.render.common import clean_text, file_url, plural
from crdswatch.render.layout import LIST_SHOWN, short_values

__all__ = [
    "CATALOG_NONE", "KIND_ORDER", "DetailView", "RowView", "TableView", "display_date", "files_table",
    "first_rows", "group_table", "known",
]


@dataclass(frozen=True)
class RowView:
    """One file (or N/A entry) of a table: its cells in column order, and its page when new."""

    file: str
    cells: tuple[str, ...]
    url: str | None  # the server's page, for new and replacing files only
    modes: tuple[str, ...] = ()  # the `modes` cell as its `NAME=value` parts, for layouts that wrap them


@dataclass(frozen=True)
class DetailView:
    """Catalog facts too long for a table cell: delivery description, deliverer, date."""

    file: str
    description: str  # "" when the catalog has none
    delivered: str  # `delivered <date> by <deliverer>`, either part when known; "" when neither is

    @property
    def text(self) -> str:
        if self.description and self.delivered:
            return f"{self.description} ({self.delivered})"
        return self.description or self.delivered


@dataclass(frozen=True)
class TableView:
    """A lead line saying what happened to the rows, then one aligned row per file."""

    heading: str
    columns: tuple[str, ...]
    rows: tuple[RowView, ...]  # the rows shown: all of them, or the first ones within a budget
    details: tuple[DetailView, ...]
    hidden: int = 0  # rows left out to meet a budget; the section says so and links to the rest


@functools.lru_cache(maxsize=1024)  # the same USEAFTER and activation dates, row after row, notice after notice
def display_date(text: str) -> str:
    try:
        return parse_history_date(text).strftime("%Y-%m-%d %H:%M:%S UTC")
    except ValueError:
        return clean_text(text) or "unknown"



CATALOG_NONE = "Catalog: no pedigree, change level or deliverer on record for these files."
_CATALOG_COLUMNS = ("pedigree", "change level")
_NOT_A_FILE = "—"  # catalog cells of N/A entries, which are not files
# Row order of the files table: what the reader gets first, what goes away last.
KIND_ORDER = ("new", "replaced", "no longer N/A", "rule added", "now N/A", "rule removed", "removed")
_KIND_HEADLINES = {
    "new": ("new file", "new files"), "replaced": ("file replaced", "files replaced"),
    "removed": ("file removed", "files removed"),
    "rule added": ("rule added for a file already in this rmap", "rules added for files already in this rmap"),
    "rule removed": ("rule removed (file still used elsewhere)", "rules removed (files still used elsewhere)"),
    "now N/A": ("rule now N/A (step not applied)", "rules now N/A (step not applied)"),
    "no longer N/A": ("N/A rule removed or applied", "N/A rules removed or applied"),
}


def _one_line(value: str | None) -> str:
    return " ".join(clean_text(value).split())


def known(event: FileEvent) -> bool:
    """Whether the catalog said anything about this file (a fact `_one_line` leaves something of)."""
    info = event.info
    if info is None:
        return False
    # A loop rather than any() over a generator, and no joined line: asked of every event of
    # every section viewed.
    for value in (info.pedigree, info.change_level, info.description, info.deliverer, info.delivery_date):
        if value and clean_text(value).split():
            return True
    return False


def first_rows(table: TableView, rows: int) -> TableView:
    if len(table.rows) <= rows:
        return table
    kept = table.rows[:rows]
    names = {r.file for r in kept}
    return TableView(table.heading, table.columns, kept, tuple(d for d in table.details if d.file in names),
                     len(table.rows) - rows)


def _catalog_cells(event: FileEvent) -> tuple[str, str]:
    if event.not_applicable:
        return _NOT_A_FILE, _NOT_A_FILE
    info = event.info
    return (_one_line(info.pedigree if info else None) or "unknown",
            _one_line(info.change_level if info else None) or "unknown")


def _detail(event: FileEvent) -> DetailView | None:
    info = event.info
    if info is None or event.not_applicable:
        return None
    description, deliverer = _one_line(info.description), _one_line(info.deliverer)
    date = display_date(info.delivery_date) if info.delivery_date and _one_line(info.delivery_date) else ""
    delivered = " ".join(p for p in ("delivered", date, f"by {deliverer}" if deliverer else "") if p)
    if not (description or deliverer or date):
        return None
    return DetailView(clean_text(event.file), description, delivered if deliverer or date else "")


def _useafter(event: FileEvent) -> str:
    return clean_text(event.useafter) or "none"


def _action(event: FileEvent) -> str:
    if event.kind == "replaced":
        return f"replaces {event.old_file}"
    if event.kind == "now N/A":
        return "now N/A" + (f", replaces {event.old_file}" if event.old_file else "")
    if event.kind == "no longer N/A":
        if is_special(event.file):
            return "N/A rule removed"
        return f"replaces {event.old_file} (now applied)" if event.old_file else "now applied (was N/A)"
    if event.kind == "rule added":
        return "rule added (file already in this rmap)"
    if event.kind == "rule removed":
        return "rule removed (file still used elsewhere)"
    return f"{event.kind} ({event.detail})" if event.detail else event.kind


def _delivered(event: FileEvent) -> bool:
    """New and replacing files get a link to their page; files that merely moved do not."""
    return event.kind in ("new", "replaced", "no longer N/A") and not event.not_applicable


def files_table(events: list[FileEvent], server: str, catalog: bool, archive: bool) -> TableView:
    kinds = Counter(e.kind for e in events)
    heading = ", ".join(f"{n} {_KIND_HEADLINES[k][n != 1]}" for k, n in kinds.items()) + ":"
    columns = ("action", "file", "USEAFTER", "modes", *(_CATALOG_COLUMNS if catalog else ()))
    rows = []
    for e in events:
        file = clean_text(e.file)
        parts = tuple(_one_line(f"{k}={short_values(v, archive)}") for k, v in e.modes.items())
        cells = (_one_line(_action(e)), file, _useafter(e), " ".join(parts) or "all",
                 *(_catalog_cells(e) if catalog else ()))
        rows.append(RowView(file, cells, file_url(server, file) if _delivered(e) else None, parts))
    details = tuple(d for e in events for d in [_detail(e)] if d)
    return TableView(clean_text(heading), columns, tuple(rows), details)


def group_table(events: list[FileEvent], catalog: bool, archive: bool) -> TableView:
    """Files whose rules changed the same way: the change once, then the rest of each rule."""
    changed = {m.parameter for m in events[0].mode_changes}
    params = [p for p in dict.fromkeys(k for e in events for k in e.modes) if p not in changed]
    columns = ("file", "USEAFTER", *params, *(_CATALOG_COLUMNS if catalog else ()))
    rows = tuple(
        RowView(clean_text(e.file),
                (clean_text(e.file), _useafter(e), *(short_values(_one_line(e.modes.get(p)), archive) for p in params),
                 *(_catalog_cells(e) if catalog else ())), None)
        for e in events)
    details = tuple(d for e in events for d in [_detail(e)] if d)
    return TableView(clean_text(_shift(events)), columns, rows, details)


def _shift(events: list[FileEvent]) -> str:
    """`18 files now also apply to READPATT NRSRAPIDD1, NRSRAPIDD2 (was NRS|NRSRAPID):`"""
    n, first = len(events), events[0]
    one = n == 1
    if first.not_applicable:
        who = "N/A (step not applied)" if one else f"{n} N/A rules (step not applied)"
    else:
        who = plural(n, "file")
    apply, have = ("applies", "has") if one else ("apply", "have")
    parts = []
    for m in first.mode_changes:
        was, now = _values(m.was) or "(none)", _values(m.now) or "(none)"
        if m.parameter == "USEAFTER":
            parts.append(f"{have} USEAFTER {now} (was {was})")
        elif m.direction == "widened" and m.gained and not m.lost:
            parts.append(f"now also {apply} to {m.parameter} {_listed(m.gained)} (was {was})")
        elif m.direction == "narrowed" and m.lost and not m.gained:
            parts.append(f"no longer {apply} to {m.parameter} {_listed(m.lost)} (now {now})")
        else:
            parts.append(f"now {apply} to {m.parameter} {now} (was {was})")
    return f"{who} {' and '.join(parts)}:" if parts else f"{who}, rule rewritten with the same modes:"


def _listed(values: tuple[str, ...]) -> str:
    """The values a rule gained or lost; a long list names the first ones and counts the rest."""
    if len(values) <= 2 * LIST_SHOWN:
        return ", ".join(values)
    return f"{', '.join(values[:LIST_SHOWN])} and {len(values) - LIST_SHOWN} more"


def _values(value: str) -> str:
    """A rule's whole `A|B|...` value in a heading: a long one is counted (the rows show it)."""
    count = value.count("|") + 1
    return value if count <= 2 * LIST_SHOWN else f"{count} values"
