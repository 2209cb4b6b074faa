"""Plain-text notice body, laid out like a ReDCaT delivery notice, ≤ 78 characters a line (pure).

Only a token that cannot be broken (a URL, a file name) may run past WIDTH. A table that does
not fit becomes one block per file; long lists of match values wrap after a `|`.
"""

from __future__ import annotations

import functools
import textwrap

import jinja2

from crdswatch.model import Notice
from crdswatch.notices.memo import SECTIONS, IdentityMemo
from crdswatch.render.common import WIDTH, plural
from crdswatch.render.compiled import Compiled
from crdswatch.render.layout import block_lines, glued, pack, wrap
from crdswatch.render.overview import OVERVIEW_COLUMNS, OverviewRow
from crdswatch.render.view import NoticeView, SectionView, TableView, notice_view

__all__ = ["overview_lines", "render_text", "table_lines", "text_body"]

_GAP = "  "  # between table columns
_LABELLED = frozenset({"USEAFTER", "pedigree", "change level"})  # shown as `NAME value` in blocks


def _aligned(columns: tuple[str, ...], rows: list[tuple[str, ...]], indent: str) -> list[str]:
    grid = [columns, *rows]
    widths = [max(map(len, column)) for column in zip(*grid)]  # every row has a cell per column
    # map(str.ljust, ...) pads in C: every row of every section viewed goes through here.
    return [indent + _GAP.join(map(str.ljust, row, widths)).rstrip() for row in grid]


def _fact(column: str, cell: str, modes: tuple[str, ...] = ()) -> list[str]:
    if column == "modes":
        return list(modes) if modes else ["all modes"]
    return [f"{column} {cell}" if column in _LABELLED else f"{column}={cell}"]


def table_lines(table: TableView, indent: str = "    ") -> list[str]:
    """The table aligned in columns when it fits in WIDTH; else with the columns every row
    shares said once above it; else one block per file."""
    columns, rows = table.columns, [r.cells for r in table.rows]
    parts = [r.modes for r in table.rows]
    if not rows:
        return []
    aligned = _aligned(columns, rows, indent)
    if max(map(len, aligned)) <= WIDTH:
        return aligned
    head: list[str] = []
    if len(rows) > 1:
        same = [i for i, c in enumerate(columns) if c not in ("file", "action", "modes")
                and all(r[i] == rows[0][i] for r in rows)]
        if same:
            head = pack(["same for all:", *(f for i in same for f in _fact(columns[i], rows[0][i]))],
                        indent, indent + "  ")
            keep = [i for i in range(len(columns)) if i not in same]
            columns, rows = tuple(columns[i] for i in keep), [tuple(r[i] for i in keep) for r in rows]
            aligned = _aligned(columns, rows, indent)
            if max(map(len, aligned)) <= WIDTH:
                return head + aligned
    lines = head
    for row, modes in zip(rows, parts):
        first, facts = "", []
        for column, cell in zip(columns, row):
            if column == "file":
                first = f"{cell}  {first}".strip()
            elif column == "action":
                first = f"{first}  {cell}".strip()
            else:
                facts += _fact(column, cell, modes)
        lines += block_lines(first, facts, indent)
    return lines


def _detail_lines(table: TableView, indent: str = "      ") -> list[str]:
    """`file: description (delivered date by deliverer)`, wrapped under the file."""
    lines: list[str] = []
    for d in table.details:
        head = f"{d.file}: {d.text}" if d.text else f"{d.file}:"
        lines += textwrap.wrap(head, WIDTH, initial_indent=indent, subsequent_indent=indent + "  ",
                               break_on_hyphens=False, break_long_words=False)
    return lines


def _more_lines(hidden: int, where: str, indent: str = "    ") -> list[str]:
    return wrap(f"… and {plural(hidden, 'more row')} on {where}", indent, indent + "  ")


def overview_lines(rows: tuple[OverviewRow, ...], indent: str = "  ") -> list[str]:
    """The digest's overview table: one aligned row per activation, numbers right-aligned."""
    fixed = [max(len(OVERVIEW_COLUMNS[i]), *(len(r.cells(0)[i]) for r in rows)) for i in (0, 1, 3, 4, 5, 6)]
    room = WIDTH - len(indent) - sum(fixed) - len(_GAP) * 6
    grid = [OVERVIEW_COLUMNS, *(r.cells(room) for r in rows)]
    widths = [max(len(row[i]) for row in grid) for i in range(len(OVERVIEW_COLUMNS))]
    out = []
    for row in grid:
        cells = [c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))]
        out.append(indent + _GAP.join(cells).rstrip())
    return out


def _wrap_filter(text: str, indent: str = "", subsequent: str | None = None) -> list[str]:
    return wrap(text, indent, subsequent)


@functools.cache
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("crdswatch", "templates"),
        autoescape=False,  # plain text: nothing to escape, and escaping would corrupt it
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["table_lines"] = table_lines
    env.filters["detail_lines"] = _detail_lines
    env.filters["wrap"] = _wrap_filter
    env.filters["pack"] = pack
    env.filters["glued"] = glued
    env.filters["overview_lines"] = overview_lines
    env.globals["more_lines"] = _more_lines
    env.globals["plural"] = plural
    env.filters["section_body"] = _section_body  # a filter: called directly, not through Context.call
    return env


@functools.cache
def _template() -> Compiled:
    # Looked up once: get_template checks the file's mtime on every call (a third of a millisecond).
    return Compiled(_environment().get_template("notice.txt.j2"))


@functools.cache
def _section_template() -> Compiled:
    return Compiled(_environment().get_template("notice_section.txt.j2"))


# Section bodies rendered lately: the subscribers of one activation whose selections share a
# section share its view's notes and tables (render.view), and so this text.
_SECTIONS: IdentityMemo[str] = IdentityMemo(SECTIONS)


def _section_body(s: SectionView, more_where: str) -> str:
    """A section below its title and why; the template is given only what the key holds."""
    return _SECTIONS.get((s.notes, s.tables), (s.catalog_note, s.links, more_where), lambda: _section_template().render(
        notes=s.notes, tables=s.tables, catalog_note=s.catalog_note, links=s.links, more_where=more_where))


def render_text(view: NoticeView) -> str:
    return _template().render(n=view)


def text_body(notice: Notice) -> str:
    """The full text body: every file of every activation, never truncated."""
    return render_text(notice_view(notice))
