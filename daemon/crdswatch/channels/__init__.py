"""Delivery channels: each sends one already-rendered item and raises typed delivery errors."""

from __future__ import annotations

from crdswatch.channels.base import ChannelPausedError
from crdswatch.channels.email import EmailChannel, SendResult, SmtpSettings
from crdswatch.channels.slack import SlackChannel
from crdswatch.channels.webhook import WebhookChannel

__all__ = [
    "CHANNELS",
    "ChannelClass",
    "ChannelPausedError",
    "EmailChannel",
    "SendResult",
    "SlackChannel",
    "SmtpSettings",
    "WebhookChannel",
]

ChannelClass = type[EmailChannel] | type[SlackChannel] | type[WebhookChannel]

# Explicit on purpose: adding a channel means adding a line here, never an import side effect.
CHANNELS: dict[str, ChannelClass] = {
    EmailChannel.kind: EmailChannel,
    SlackChannel.kind: SlackChannel,
    WebhookChannel.kind: WebhookChannel,
}
