"""Slack incoming-webhook channel: posts payloads that `render.slack` built and split."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, ClassVar

import httpx

from crdswatch.channels.base import Clock, post_bytes, raise_for_status, utc_now
from crdswatch.render.budget import SLACK_BUDGET, Budget

__all__ = ["SlackChannel"]


class SlackChannel:
    """Posts one rendered payload to a Slack incoming webhook; raises typed delivery errors."""

    kind: ClassVar[str] = "slack"
    budget: ClassVar[Budget] = SLACK_BUDGET  # how much one notice may take here (render.budget)

    def __init__(self, webhook_url: str, http_client: httpx.AsyncClient, *, clock: Clock = utc_now) -> None:
        self._url = webhook_url
        self._client = http_client
        self._clock = clock

    def __repr__(self) -> str:
        return "SlackChannel(webhook_url=<redacted>)"  # the URL itself is the credential

    async def send(self, payload: Mapping[str, Any]) -> None:
        """Post `{"text": ..., "blocks": [...]}`.

        Slack answers 200 "ok"; 429 carries Retry-After; other 4xx name the problem in the body
        (`invalid_payload`, `no_service`, `channel_is_archived`, ...) and retrying cannot help.
        """
        body = json.dumps(dict(payload), ensure_ascii=False).encode()
        headers = {"content-type": "application/json; charset=utf-8"}
        response = await post_bytes(self._client, self._url, body, headers, "slack webhook")
        raise_for_status(response, "slack webhook", self._clock())
