"""Rendering, pure: a Notice becomes an e-mail message, Slack payloads or webhook JSON."""

from __future__ import annotations

from crdswatch.render.common import instrument_name
from crdswatch.render.email import email_message
from crdswatch.render.html import html_body
from crdswatch.render.sample import sample_notice
from crdswatch.render.slack import slack_payloads
from crdswatch.render.subject import subject
from crdswatch.render.text import text_body
from crdswatch.render.view import NoticeView, notice_view
from crdswatch.render.webhook import SCHEMA_ID, SCHEMA_VERSION, webhook_payload

__all__ = [
    "SCHEMA_ID",
    "SCHEMA_VERSION",
    "NoticeView",
    "email_message",
    "html_body",
    "instrument_name",
    "notice_view",
    "sample_notice",
    "slack_payloads",
    "subject",
    "text_body",
    "webhook_payload",
]
