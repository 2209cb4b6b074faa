"""HTML notice body: the text body's facts as one table per reference type, escaped (pure)."""

from __future__ import annotations

import functools

import jinja2
from markupsafe import Markup

from crdswatch.model import Notice
from crdswatch.notices.memo import SECTIONS, IdentityMemo
from crdswatch.render.compiled import Compiled
from crdswatch.render.view import NoticeView, SectionView, notice_view

__all__ = ["html_body", "render_html"]


@functools.cache
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("crdswatch", "templates"),
        autoescape=True,  # every value may come from a server: descriptions, file names, deliverers
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["section_body"] = _section_body  # a filter: called directly, not through Context.call
    env.filters["with_cells"] = _with_cells
    return env


def _with_cells(columns: tuple[str, ...], cells: tuple[str, ...]) -> list[tuple[str, str]]:
    """Each column with the row's cell in it (a plain loop: no loop.index0 bookkeeping per cell)."""
    return [(column, cells[i]) for i, column in enumerate(columns)]


@functools.cache
def _section_template() -> Compiled:
    return Compiled(_environment().get_template("notice_section.html.j2"))


# Section bodies rendered lately (escaped by their own template): the subscribers of one
# activation whose selections share a section share its view's notes and tables (render.view).
_SECTIONS: IdentityMemo[Markup] = IdentityMemo(SECTIONS)


def _section_body(s: SectionView, more_url: str, more_where: str) -> Markup:
    """A section below its heading and why; the template is given only what the key holds."""
    return _SECTIONS.get((s.notes, s.tables), (s.catalog_note, more_url, more_where), lambda: Markup(
        _section_template().render(notes=s.notes, tables=s.tables, catalog_note=s.catalog_note,
                                   more_url=more_url, more_where=more_where)))


@functools.cache
def _template() -> Compiled:
    # Looked up once: get_template checks the file's mtime on every call (a third of a millisecond).
    return Compiled(_environment().get_template("notice.html.j2"))


def render_html(view: NoticeView) -> str:
    return _template().render(n=view)


def html_body(notice: Notice) -> str:
    return render_html(notice_view(notice))
