"""Slack incoming-webhook channel: posts the payloads that `render.slack` built and split."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, ClassVar

import httpx

from crdswatch.channels.base import (
    ChannelLimits,
    Clock,
    Item,
    Wiring,
    config_value,
    post_bytes,
    raise_for_status,
    utc_now,
)
from crdswatch.limits import DEFAULT_LIMITS
from crdswatch.model import BridgeNotice, SubscriberConfig
from crdswatch.render.bridge import bridge_slack
from crdswatch.render.budget import SLACK_BUDGET, Budget
from crdswatch.render.slack import slack_payloads

__all__ = ["SlackChannel"]

Payloads = Sequence[Mapping[str, Any]]


class SlackChannel:
    """Posts rendered payloads to one Slack incoming webhook; raises typed delivery errors."""

    kind: ClassVar[str] = "slack"
    budget: ClassVar[Budget] = SLACK_BUDGET
    # Slack allows about one message per second per webhook; a few in flight is plenty.
    _LIMITS: ClassVar[ChannelLimits] = ChannelLimits(max_concurrency=4)

    def __init__(self, webhook_url: str, http_client: httpx.AsyncClient, *, clock: Clock = utc_now,
                 retry_after_max: float = DEFAULT_LIMITS.retry_after_max) -> None:
        self._url = webhook_url
        self._client = http_client
        self._clock = clock
        self._retry_after_max = retry_after_max

    def __repr__(self) -> str:
        return "SlackChannel(webhook_url=<redacted>)"  # the URL itself is the credential

    @classmethod
    def limits(cls, wiring: Wiring) -> ChannelLimits:
        return cls._LIMITS

    @classmethod
    def open(cls, target: str, config: SubscriberConfig, wiring: Wiring) -> SlackChannel:
        return cls(config_value(config, "slack_webhook", cls.kind), wiring.http,
                   retry_after_max=wiring.limits.retry_after_max)

    def render(self, item: Item, key: str, now: datetime) -> Payloads:
        return bridge_slack(item) if isinstance(item, BridgeNotice) else slack_payloads(item, self.budget)

    async def send(self, rendered: Payloads, key: str, now: datetime) -> None:
        """Post each part of a split notice in order."""
        for payload in rendered:
            await self.post(payload)

    async def post(self, payload: Mapping[str, Any]) -> None:
        """Post `{"text": ..., "blocks": [...]}`.

        Slack answers 200 "ok"; 429 carries Retry-After; other 4xx name the problem in the body
        (`invalid_payload`, `no_service`, `channel_is_archived`, ...) and retrying cannot help.
        """
        body = json.dumps(dict(payload), ensure_ascii=False).encode()
        headers = {"content-type": "application/json; charset=utf-8"}
        response = await post_bytes(self._client, self._url, body, headers, "slack webhook")
        raise_for_status(response, "slack webhook", self._clock(), retry_after_max=self._retry_after_max)
