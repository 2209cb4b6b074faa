"""Notice -> display-ready view shared by the text, HTML and Slack renderers (pure)."""

from __future__ import annotations

import functools
import textwrap
from dataclasses import dataclass

from crdswatch.model import ActivationDiff, Notice
from crdswatch.notices.memo import SECTIONS, IdentityMemo
from crdswatch.notices.summary import FileEvent, Note, Section, Summary, summarise
from crdswatch.notices.why import section_why
from crdswatch.render.budget import FULL, Detail
from crdswatch.render.common import STATES, WIDTH, clean_text, context_url, instrument_name
from crdswatch.render.overview import OverviewRow, overview_row
from crdswatch.render.subject import activation_headline, subject_line, what_happened
from crdswatch.render.tables import (
    CATALOG_NONE,
    KIND_ORDER,
    DetailView,
    RowView,
    TableView,
    display_date,
    files_table,
    first_rows,
    group_table,
    known,
)

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

    def with_why(self, why: str) -> SectionView:
        """This view with another subscriber's why: every field (dataclasses.replace took 9 µs a
        call, once per section of every notice; tests/test_render.py checks they agree)."""
        return SectionView(self.title, self.rmaps, self.notes, self.tables, self.catalog_note, self.links, why,
                           self.hidden)


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
    announcements: tuple[str, ...]
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
    manage_url: str | None = None  # the subscriber's signed settings page (filters, digest, leave)

    @property
    def complete(self) -> bool:
        return not self.folded and not any(s.hidden for a in self.activations for s in a.sections)

    def with_links(self, reason: str, unsubscribe_url: str | None, manage_url: str | None) -> NoticeView:
        """This view with another reason line and links: every field (dataclasses.replace took
        12 us a call, once per rendering; tests/test_render.py checks they agree)."""
        return NoticeView(self.subject, self.subscriber, reason, unsubscribe_url, self.digest, self.activations,
                          self.overview, self.folded, self.banner, self.budget, manage_url)


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
        manage_url=clean_text(notice.manage_url) or None,
    )
    if not view.complete and detail.budget is not None:
        view = NoticeView(**{**view.__dict__, "budget": detail.budget.words()})
    return view


@functools.lru_cache(maxsize=256)  # an activation's description, once for all of its subscribers
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
    sections = tuple(_shared_section(s, server, detail, section_why(s, notice.interest, notice.dataset_hits,
                                                                      diff.observatory), archive is not None)
                     for s in summary.sections)
    return ActivationView(
        observatory=diff.observatory.upper(), server_url=server, context=clean_text(diff.activation.context),
        previous=clean_text(diff.previous) or "none", date=display_date(diff.activation.date),
        state=STATES.get(diff.state, clean_text(diff.state)), revert=diff.revert, what=clean_text(what_happened(diff)),
        description=description or "(none given)", description_lines=_wrap(description or "(none given)"),
        headline=activation_headline([diff], [summary]),
        announcements=tuple(clean_text(line) for line in diff.announcements), context_url=context_url(server, diff.activation.context),
        notes=tuple(_note(n, detail.evidence) for n in summary.notes), sections=sections, archive_url=archive,
        more_url=more, more_where="the archive page" if archive else "the server's context page",
    )


def _note(note: Note, evidence: bool = True) -> NoteView:
    return NoteView(clean_text(note.text), note.prominent, clean_text(note.line) if evidence else "")


# ---------------------------------------------------------------- one section

# Section views made lately, by the identity of their section (notices.summary gives the
# subscribers of one activation whose selections share a section the same one) and the rest of
# what the view reads but the subscriber's "why": those subscribers share one view's tables and
# notes, which the renderers then render once (render.text, render.html).
_VIEWS: IdentityMemo[SectionView] = IdentityMemo(SECTIONS)


def _shared_section(section: Section, server: str, detail: Detail, why: str, archive: bool) -> SectionView:
    # Only rows and evidence of the detail matter here, and only when they change something: a
    # budget's first, fuller levels then reuse the views of every section they leave whole.
    rows = None if detail.rows is None or detail.rows >= len(section.events) else detail.rows  # a row per event
    evidence = detail.evidence or not any(n.line for n in section.notes)
    shared = _VIEWS.get((section,), (server, rows, evidence, archive),
                        lambda: _section(section, server, Detail(rows, evidence=evidence), "", archive))
    why = clean_text(why)
    return shared.with_why(why) if why else shared


# Every row of a section's tables, by the identity of the section: a notice over budget is viewed
# again with fewer rows (render.budget), and each level keeps the first rows of these.
_TABLES: IdentityMemo[tuple[bool, tuple[TableView, ...]]] = IdentityMemo(SECTIONS)


def _section(section: Section, server: str, detail: Detail, why: str, archive: bool) -> SectionView:
    title = f"{instrument_name(section.instrument)} {section.reftype.upper() or '(instrument mapping)'}"
    rmaps = f"{section.old_rmap or 'none'} → {section.new_rmap or 'none'}"
    catalog, full = _TABLES.get((section,), (server, archive), lambda: _tables(section, server, archive))
    tables = list(full)
    real = any(not e.not_applicable for e in section.events)
    if detail.rows is not None:
        tables = [first_rows(t, detail.rows) for t in tables]
    links = tuple(dict.fromkeys(r.url for t in tables for r in t.rows if r.url))
    shown = any(t.rows for t in tables)
    return SectionView(clean_text(title), clean_text(rmaps), tuple(_note(n, detail.evidence) for n in section.notes),
                       tuple(tables), CATALOG_NONE if real and not catalog and shown else None, links, clean_text(why),
                       sum(t.hidden for t in tables))


def _tables(section: Section, server: str, archive: bool) -> tuple[bool, tuple[TableView, ...]]:
    """Whether any file of the section has catalog facts, and its tables with every row."""
    catalog = any(known(e) for e in section.events)
    tables: list[TableView] = []
    others = sorted((e for e in section.events if e.kind != "modes changed"), key=lambda e: KIND_ORDER.index(e.kind))
    if others:
        tables.append(files_table(others, server, catalog, archive))
    groups: dict[tuple[object, ...], list[FileEvent]] = {}
    for e in section.events:
        if e.kind == "modes changed":
            key = (e.not_applicable, *((m.parameter, m.was, m.now) for m in e.mode_changes))
            groups.setdefault(key, []).append(e)
    tables += [group_table(events, catalog, archive) for events in groups.values()]
    return catalog, tuple(tables)
