"""Delivery channels: each renders and sends one item to one destination, raising typed delivery errors."""

from __future__ import annotations

from typing import Any

from crdswatch.channels.base import Channel, ChannelLimits, Wiring
from crdswatch.channels.email import EmailChannel, SmtpSettings
from crdswatch.channels.mail import MailChannel, MailWiring
from crdswatch.channels.slack import SlackChannel
from crdswatch.channels.smtp_errors import SendResult
from crdswatch.channels.webhook import WebhookChannel
from crdswatch.errors import ChannelPausedError

__all__ = [
    "CHANNELS",
    "Channel",
    "ChannelLimits",
    "ChannelPausedError",
    "EmailChannel",
    "MailChannel",
    "MailWiring",
    "SendResult",
    "SlackChannel",
    "SmtpSettings",
    "WebhookChannel",
    "Wiring",
]

# Explicit on purpose: adding a channel means one module and a line here, never an import side
# effect. The drain dispatches every outbox row ("kind:target") through this table.
CHANNELS: dict[str, type[Channel[Any]]] = {
    MailChannel.kind: MailChannel,
    SlackChannel.kind: SlackChannel,
    WebhookChannel.kind: WebhookChannel,
}
