"""Rendering, pure: a Notice becomes an e-mail message, Slack payloads or webhook JSON.

Names are loaded on first use (the subject function lives in `render.subject`, whose module
name it would shadow), so importing one renderer (say the diff report on the fast
`crdswatch diff` path) does not pull in jinja2, slack_sdk and every other renderer.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from crdswatch.render.common import instrument_name as instrument_name
    from crdswatch.render.email import email_message as email_message
    from crdswatch.render.html import html_body as html_body
    from crdswatch.render.sample import sample_notice as sample_notice
    from crdswatch.render.slack import slack_payloads as slack_payloads
    from crdswatch.render.text import text_body as text_body
    from crdswatch.render.view import NoticeView as NoticeView
    from crdswatch.render.view import notice_view as notice_view
    from crdswatch.render.webhook import SCHEMA_ID as SCHEMA_ID
    from crdswatch.render.webhook import SCHEMA_VERSION as SCHEMA_VERSION
    from crdswatch.render.webhook import webhook_payload as webhook_payload

_HOME = {
    "SCHEMA_ID": "webhook",
    "SCHEMA_VERSION": "webhook",
    "NoticeView": "view",
    "email_message": "email",
    "html_body": "html",
    "instrument_name": "common",
    "notice_view": "view",
    "sample_notice": "sample",
    "slack_payloads": "slack",
    "text_body": "text",
    "webhook_payload": "webhook",
}

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
    "text_body",
    "webhook_payload",
]


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module 'crdswatch.render' has no attribute {name!r}")
    return getattr(importlib.import_module(f"crdswatch.render.{home}"), name)
