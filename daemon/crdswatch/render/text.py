"""Plain-text notice body, laid out like a ReDCaT delivery notice (pure)."""

from __future__ import annotations

import functools
import textwrap

import jinja2

from crdswatch.model import Notice
from crdswatch.render.view import WIDTH, NoticeView, notice_view

__all__ = ["render_text", "text_body"]

_INDENT = " " * 8  # continuation lines of a wrapped description, just inside the file block


def _wrap_indent(text: str) -> str:
    lines = textwrap.wrap(text, WIDTH, initial_indent=" " * 19, subsequent_indent=_INDENT) or [""]
    lines[0] = lines[0].lstrip()  # the first line follows "description: " on the template's line
    return "\n".join(lines)


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
    env.filters["wrap_indent"] = _wrap_indent
    return env


def render_text(view: NoticeView) -> str:
    return _environment().get_template("notice.txt.j2").render(n=view)


def text_body(notice: Notice) -> str:
    """The full text body: every file of every activation, never truncated."""
    return render_text(notice_view(notice))
