"""Notice -> display-ready view shared by the text, HTML and Slack renderers (pure)."""

from __future__ import annotations

import textwrap
from collections import Counter
from dataclasses import dataclass

from crdswatch.contexts.history import parse_history_date
from crdswatch.model import ActivationDiff, Notice
from crdswatch.notices.summary import FileEvent, Note, Section, Summary, is_special, summarise
from crdswatch.notices.why import section_why
from crdswatch.render.budget import FULL, Detail
from crdswatch.render.common import (
    STATES,
    WIDTH,
    clean_text,
    context_url,
    file_url,
    instrument_name,
    plural,
)
from crdswatch.render.layout import LIST_SHOWN, short_values
from crdswatch.render.overview import OverviewRow, overview_row
from crdswatch.render.subject import activation_headline, subject_line, what_happened

__all__ = [
    "CATALOG_NONE",
    "ActivationView",
    "DetailView",
    "NoticeView",
    "OverviewRow",
    "RowView",
    "SectionView",
    "TableView",
    "notice_view",
]

# ---------------------------------------------------------------- views


@dataclass(frozen=True)
class RowView:
    """One file (or N/A entry) of a table: its cells in column order, and its page when new."""

    file: str
    cells: tuple[str, ...]
    url: str | None  # the server's page, for new and replacing files only


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


@dataclass(frozen=True)
class NoteView:
    text: str
    prominent: bool
    line: str


@dataclass(frozen=True)
class SectionView:
    title: str
    rmaps: str
    notes: tuple[NoteView, ...]
    tables: tuple[TableView, ...]
    catalog_note: str | None  # one line when no file of the section has catalog facts
    links: tuple[str, ...]  # pages of the new and replacing files
    why: str = ""  # which of the subscriber's filters selected this section
    hidden: int = 0  # rows of its tables left out to meet a budget

    @property
    def files(self) -> tuple[str, ...]:
        return tuple(r.file for t in self.tables for r in t.rows)


@dataclass(frozen=True)
class ActivationView:
    observatory: str
    server_url: str
    context: str
    previous: str
    date: str
    state: str
    revert: bool
    what: str
    description: str
    description_lines: tuple[str, ...]
    headline: str
    context_url: str
    notes: tuple[NoteView, ...]
    sections: tuple[SectionView, ...]
    archive_url: str | None = None  # crdswatch's page with every fact of this activation
    more_url: str = ""  # where the rows left out are: the archive page, else the server's context page
    more_where: str = ""  # the same in words


@dataclass(frozen=True)
class NoticeView:
    subject: str
    subscriber: str
    reason: str
    unsubscribe_url: str | None
    digest: str
    activations: tuple[ActivationView, ...]  # those shown in full
    overview: tuple[OverviewRow, ...] = ()  # digests: one row per activation, shown or not
    folded: tuple[OverviewRow, ...] = ()  # activations in the overview only, to meet a budget
    banner: str | None = None  # send-test: says so at the top of every channel
    budget: str = ""  # the budget met by leaving things out, in words ("100 KB"); "" when complete

    @property
    def complete(self) -> bool:
        return not self.folded and not any(s.hidden for a in self.activations for s in a.sections)


TEST_BANNER = ("TEST NOTICE from `crdswatch send-test`: sample data, not a real CRDS activation. "
               "Nothing here needs doing.")


def notice_view(notice: Notice, detail: Detail = FULL, summaries: list[Summary] | None = None) -> NoticeView:
    """The notice as display-ready data, with as much `detail` as a channel's budget allows.

    `summaries` (one per activation) may be passed in when the same notice is viewed at several
    levels of detail, so they are computed once.
    """
    diffs = list(notice.activations)
    summaries = summaries if summaries is not None else [summarise(d) for d in diffs]
    public = clean_text(notice.public_url).rstrip("/") or None
    rows = tuple(overview_row(d, s, public) for d, s in zip(diffs, summaries)) if len(diffs) > 1 else ()
    keep = len(diffs) if detail.activations is None else detail.activations
    shown = tuple(_activation(d, s, notice, detail, public) for d, s in zip(diffs[:keep], summaries[:keep]))
    view = NoticeView(
        subject_line(diffs, summaries, test=notice.test), clean_text(notice.subscriber),
        " ".join(clean_text(notice.reason).split()), clean_text(notice.unsubscribe_url) or None, notice.digest,
        shown, rows, rows[keep:], TEST_BANNER if notice.test else None,
    )
    if not view.complete and detail.budget is not None:
        view = NoticeView(**{**view.__dict__, "budget": detail.budget.words()})
    return view


def _date(text: str) -> str:
    try:
        return parse_history_date(text).strftime("%Y-%m-%d %H:%M:%S UTC")
    except ValueError:
        return clean_text(text) or "unknown"


def _wrap(text: str, indent: str = "  ") -> tuple[str, ...]:
    lines: list[str] = []
    for paragraph in text.split("\n"):
        lines.extend(textwrap.wrap(paragraph, WIDTH, initial_indent=indent, subsequent_indent=indent,
                                   break_long_words=False, break_on_hyphens=False) or [""])
    return tuple(lines)


def _activation(diff: ActivationDiff, summary: Summary, notice: Notice, detail: Detail,
                public: str | None) -> ActivationView:
    server = clean_text(diff.server_url)
    description = clean_text(diff.activation.description)
    context = clean_text(diff.activation.context)
    archive = f"{public}/activations/{context}" if public else None
    more = archive or context_url(server, diff.activation.context)
    sections = tuple(_section(s, server, detail, section_why(s, notice.interest, notice.dataset_hits,
                                                               diff.observatory), archive is not None)
                     for s in summary.sections)
    return ActivationView(
        observatory=diff.observatory.upper(), server_url=server, context=clean_text(diff.activation.context),
        previous=clean_text(diff.previous) or "none", date=_date(diff.activation.date),
        state=STATES.get(diff.state, clean_text(diff.state)), revert=diff.revert, what=clean_text(what_happened(diff)),
        description=description or "(none given)", description_lines=_wrap(description or "(none given)"),
        headline=activation_headline([diff], [summary]), context_url=context_url(server, diff.activation.context),
        notes=tuple(_note(n, detail.evidence) for n in summary.notes), sections=sections, archive_url=archive,
        more_url=more, more_where="the archive page" if archive else "the server's context page",
    )


def _note(note: Note, evidence: bool = True) -> NoteView:
    return NoteView(clean_text(note.text), note.prominent, clean_text(note.line) if evidence else "")


# ---------------------------------------------------------------- one section: tables


CATALOG_NONE = "Catalog: no pedigree, change level or deliverer on record for these files."
_CATALOG_COLUMNS = ("pedigree", "change level")
_NOT_A_FILE = "—"  # catalog cells of N/A entries, which are not files
# Row order of the files table: what the reader gets first, what goes away last.
_KIND_ORDER = ("new", "replaced", "no longer N/A", "rule added", "now N/A", "rule removed", "removed")
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


def _known(event: FileEvent) -> bool:
    """Whether the catalog said anything about this file."""
    info = event.info
    return info is not None and any(
        _one_line(v) for v in (info.pedigree, info.change_level, info.description, info.deliverer,
                               info.delivery_date))


def _section(section: Section, server: str, detail: Detail, why: str, archive: bool) -> SectionView:
    title = f"{instrument_name(section.instrument)} {section.reftype.upper() or '(instrument mapping)'}"
    rmaps = f"{section.old_rmap or 'none'} → {section.new_rmap or 'none'}"
    catalog = any(_known(e) for e in section.events)
    tables: list[TableView] = []
    others = sorted((e for e in section.events if e.kind != "modes changed"), key=lambda e: _KIND_ORDER.index(e.kind))
    if others:
        tables.append(_files_table(others, server, catalog, archive))
    groups: dict[tuple[object, ...], list[FileEvent]] = {}
    for e in section.events:
        if e.kind == "modes changed":
            key = (e.not_applicable, *((m.parameter, m.was, m.now) for m in e.mode_changes))
            groups.setdefault(key, []).append(e)
    tables += [_group_table(events, catalog, archive) for events in groups.values()]
    real = any(not e.not_applicable for e in section.events)
    if detail.rows is not None:
        tables = [_first_rows(t, detail.rows) for t in tables]
    links = tuple(dict.fromkeys(r.url for t in tables for r in t.rows if r.url))
    shown = any(t.rows for t in tables)
    return SectionView(clean_text(title), clean_text(rmaps), tuple(_note(n, detail.evidence) for n in section.notes),
                       tuple(tables), CATALOG_NONE if real and not catalog and shown else None, links, clean_text(why),
                       sum(t.hidden for t in tables))


def _first_rows(table: TableView, rows: int) -> TableView:
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
    date = _date(info.delivery_date) if info.delivery_date and _one_line(info.delivery_date) else ""
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


def _files_table(events: list[FileEvent], server: str, catalog: bool, archive: bool) -> TableView:
    kinds = Counter(e.kind for e in events)
    heading = ", ".join(f"{n} {_KIND_HEADLINES[k][n != 1]}" for k, n in kinds.items()) + ":"
    columns = ("action", "file", "USEAFTER", "modes", *(_CATALOG_COLUMNS if catalog else ()))
    rows = []
    for e in events:
        file = clean_text(e.file)
        modes = _one_line(" ".join(f"{k}={short_values(v, archive)}" for k, v in e.modes.items())) or "all"
        cells = (_one_line(_action(e)), file, _useafter(e), modes, *(_catalog_cells(e) if catalog else ()))
        rows.append(RowView(file, cells, file_url(server, file) if _delivered(e) else None))
    details = tuple(d for e in events for d in [_detail(e)] if d)
    return TableView(clean_text(heading), columns, tuple(rows), details)


def _group_table(events: list[FileEvent], catalog: bool, archive: bool) -> TableView:
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
