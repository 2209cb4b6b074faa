"""Notice e-mail: multipart/alternative (text, then HTML) with list and anti-auto-reply headers (pure)."""

from __future__ import annotations

from datetime import datetime
from email.message import EmailMessage

from crdswatch.model import Notice
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
) -> EmailMessage:
    """`date` is passed in (no clock here); `unsubscribe_url` defaults to the notice's own link."""
    view = notice_view(notice)
    msg = EmailMessage(policy=NOTICE_POLICY)
    msg.set_content(render_text(view), charset="utf-8")
    # Clients show the last alternative they understand, so HTML goes second.
    msg.add_alternative(render_html(view), subtype="html", charset="utf-8")
    observatories = "/".join(dict.fromkeys(a.observatory for a in view.activations)) or "CRDS"
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
