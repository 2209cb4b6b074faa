"""Plain-text notice body, laid out like a ReDCaT delivery notice (pure)."""

from __future__ import annotations

import functools
import textwrap

import jinja2

from crdswatch.model import Notice
from crdswatch.render.common import WIDTH
from crdswatch.render.view import NoticeView, TableView, notice_view

__all__ = ["render_text", "table_lines", "text_body"]

_GAP = "  "  # between table columns
_SLACK = 24  # a delivery line may run this far past WIDTH rather than take a line of its own


def table_lines(table: TableView, indent: str = "    ") -> list[str]:
    """The table's header and rows, each column padded to its widest cell."""
    grid = [table.columns, *(r.cells for r in table.rows)]
    widths = [max(len(row[i]) for row in grid) for i in range(len(table.columns))]
    return [indent + _GAP.join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in grid]


def _detail_lines(table: TableView, indent: str = "      ") -> list[str]:
    """`file: description (delivered date by deliverer)`; a long description wraps under the file,
    and the delivery goes on a line of its own rather than break."""
    lines: list[str] = []
    more = indent + "  "
    for d in table.details:
        head = f"{d.file}: {d.description}" if d.description else f"{d.file}:"
        lines += textwrap.wrap(head, WIDTH, initial_indent=indent, subsequent_indent=more,
                               break_on_hyphens=False, break_long_words=False)
        if d.delivered:
            suffix = f"({d.delivered})" if d.description else d.delivered
            if len(lines[-1]) + 1 + len(suffix) <= WIDTH + _SLACK:
                lines[-1] += " " + suffix
            else:
                lines.append(more + suffix)
    return lines


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
    return env


def render_text(view: NoticeView) -> str:
    return _environment().get_template("notice.txt.j2").render(n=view)


def text_body(notice: Notice) -> str:
    """The full text body: every file of every activation, never truncated."""
    return render_text(notice_view(notice))
