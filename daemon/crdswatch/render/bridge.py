"""Bridge notices (upstream list posts, MAST program events) in every channel's form (pure)."""

from __future__ import annotations

import textwrap
from datetime import datetime
from email.message import EmailMessage
from email.policy import default
from typing import Any

import jinja2

from crdswatch.model import BridgeNotice
from crdswatch.render.common import clean_text
from crdswatch.render.email_headers import apply_headers, build_headers

__all__ = ["bridge_email", "bridge_html", "bridge_slack", "bridge_text", "bridge_webhook"]

WIDTH = 78
_HTML = jinja2.Environment(autoescape=True).from_string(
    "<!doctype html><html><body style=\"font-family:sans-serif;max-width:42em\">"
    "<h2>{{ subject }}</h2>"
    "{% for line in lines %}{% if line %}<p style=\"margin:0 0 .3em;overflow-wrap:anywhere\">{{ line }}</p>"
    "{% else %}<br>{% endif %}{% endfor %}"
    "{% if n.link %}<p><a href=\"{{ n.link }}\">Read it in the archive</a></p>{% endif %}"
    "<hr><p style=\"color:#555\">Why you got this: {{ reason }}</p>"
    "{% if n.unsubscribe_url %}<p><a href=\"{{ n.unsubscribe_url }}\">Unsubscribe</a></p>{% endif %}"
    "</body></html>"
)


def _lines(notice: BridgeNotice) -> list[str]:
    return [clean_text(line) if line.strip() else "" for line in notice.lines]


def bridge_text(notice: BridgeNotice) -> str:
    """Plain text, wrapped at 78 columns (URLs and names are never broken)."""
    out: list[str] = []
    for line in _lines(notice):
        indent = line[: len(line) - len(line.lstrip())]
        out += textwrap.wrap(line, WIDTH, subsequent_indent=indent + "  ", break_long_words=False,
                             break_on_hyphens=False) or [""]
    if notice.link:
        out += ["", f"Archive: {notice.link}"]
    out += ["", "--", *textwrap.wrap(f"Why you got this: {clean_text(notice.reason)}", WIDTH)]
    if notice.unsubscribe_url:
        out.append(f"Unsubscribe: {notice.unsubscribe_url}")
    return "\n".join(out) + "\n"


def bridge_html(notice: BridgeNotice) -> str:
    return _HTML.render(n=notice, lines=_lines(notice), subject=clean_text(notice.subject),
                        reason=clean_text(notice.reason))


def bridge_slack(notice: BridgeNotice) -> list[dict[str, Any]]:
    """One Slack message: a header and the text in sections (each well under 3,000 characters)."""
    from slack_sdk.models.blocks import ContextBlock, HeaderBlock, SectionBlock
    from slack_sdk.models.blocks.basic_components import MarkdownTextObject, PlainTextObject

    text = "\n".join(_lines(notice))
    chunks = [text[i:i + 2900] for i in range(0, min(len(text), 2900 * 10), 2900)] or [""]
    blocks: list[Any] = [HeaderBlock(text=PlainTextObject(text=clean_text(notice.subject)[:150]))]
    blocks += [SectionBlock(text=PlainTextObject(text=chunk or " ")) for chunk in chunks]
    footer = f"Why you got this: {clean_text(notice.reason)}" + (f" · <{notice.link}|archive>" if notice.link else "")
    blocks.append(ContextBlock(elements=[MarkdownTextObject(text=footer[:2900])]))
    return [{"text": clean_text(notice.subject)[:3000], "blocks": [b.to_dict() for b in blocks]}]


def bridge_webhook(notice: BridgeNotice) -> dict[str, Any]:
    return {
        "schema": "https://crdswatch.invalid/schema/bridge/v1",
        "schema_version": 1,
        "kind": notice.kind,
        "source": notice.source,
        "subject": notice.subject,
        "subscriber": notice.subscriber,
        "reason": notice.reason,
        "link": notice.link,
        "unsubscribe_url": notice.unsubscribe_url,
        "text": "\n".join(_lines(notice)),
    }


def bridge_email(
    notice: BridgeNotice, *, sender: str, to: list[str], message_id: str, date: datetime, list_id: str,
    unsubscribe_mailto: str | None = None,
) -> EmailMessage:
    msg = EmailMessage(policy=default)
    msg.set_content(bridge_text(notice), charset="utf-8")
    msg.add_alternative(bridge_html(notice), subtype="html", charset="utf-8")
    headers = build_headers(
        message_id=message_id, date=date, list_id=list_id, list_name=f"crdswatch: {notice.source}",
        unsubscribe_url=notice.unsubscribe_url, unsubscribe_mailto=unsubscribe_mailto,
        subject=notice.subject, sender=sender, to=to,
    )
    return apply_headers(msg, headers)
