"""Notice e-mail: multipart/alternative (text, then HTML) with list and anti-auto-reply headers (pure)."""

from __future__ import annotations

from datetime import datetime
from email.message import EmailMessage
from typing import Any

from crdswatch.model import Notice
from crdswatch.notices.summary import summarise
from crdswatch.render.budget import EMAIL_BUDGET, Budget, Detail, fit
from crdswatch.render.email_headers import NOTICE_POLICY, apply_headers, build_headers
from crdswatch.render.html import render_html
from crdswatch.render.text import render_text
from crdswatch.render.view import notice_view

__all__ = ["email_message"]


def email_message(
    notice: Notice,
    *,
    sender: str,
    to: list[str],
    message_id: str,
    date: datetime,
    list_id: str,
    unsubscribe_url: str | None = None,
    unsubscribe_mailto: str | None = None,
    budget: Budget = EMAIL_BUDGET,
) -> EmailMessage:
    """`date` is passed in (no clock here); `unsubscribe_url` defaults to the notice's own link.

    The whole message (headers, text and HTML parts as encoded) stays within `budget`: a longer
    notice keeps its overview and the first rows of each section, and says where the rest is.
    """
    summaries = [summarise(d) for d in notice.activations]

    def build(detail: Detail) -> EmailMessage:
        return _message(notice, detail, summaries, sender=sender, to=to, message_id=message_id, date=date,
                        list_id=list_id, unsubscribe_url=unsubscribe_url, unsubscribe_mailto=unsubscribe_mailto)

    return fit(build, lambda msg: (len(msg.as_bytes()), 1), budget, len(notice.activations))


def _message(notice: Notice, detail: Detail, summaries: list[Any], *, sender: str, to: list[str], message_id: str,
             date: datetime, list_id: str, unsubscribe_url: str | None, unsubscribe_mailto: str | None,
             ) -> EmailMessage:
    view = notice_view(notice, detail, summaries)
    msg = EmailMessage(policy=NOTICE_POLICY)
    msg.set_content(render_text(view), charset="utf-8")
    # Clients show the last alternative they understand, so HTML goes second.
    msg.add_alternative(render_html(view), subtype="html", charset="utf-8")
    observatories = "/".join(dict.fromkeys(d.observatory.upper() for d in notice.activations)) or "CRDS"
    headers = build_headers(
        message_id=message_id,
        date=date,
        list_id=list_id,
        list_name=f"CRDS {observatories} context activations",
        unsubscribe_url=unsubscribe_url or notice.unsubscribe_url,
        unsubscribe_mailto=unsubscribe_mailto,
        subject=view.subject,
        sender=sender,
        to=to,
    )
    return apply_headers(msg, headers)
