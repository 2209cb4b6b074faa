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


def render_html(view: NoticeView) -> str:
    return _environment().get_template("notice.html.j2").render(n=view)


def html_body(notice: Notice) -> str:
    return render_html(notice_view(notice))
