"""HTML notice body: the text body's facts as one table per reference type, escaped (pure)."""

from __future__ import annotations

import functools

import jinja2

from crdswatch.model import Notice
from crdswatch.render.view import NoticeView, notice_view

__all__ = ["html_body", "render_html"]


@functools.cache
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("crdswatch", "templates"),
        autoescape=True,  # every value may come from a server: descriptions, file names, deliverers
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


@functools.cache
def _template() -> jinja2.Template:
    # Looked up once: get_template checks the file's mtime on every call (a third of a millisecond).
    return _environment().get_template("notice.html.j2")


def render_html(view: NoticeView) -> str:
    return _template().render(n=view)


def html_body(notice: Notice) -> str:
    return render_html(notice_view(notice))
