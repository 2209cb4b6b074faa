"""Generic webhook channel: a JSON POST signed per the Standard Webhooks specification."""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar
from urllib.parse import urlsplit

import httpx
from standardwebhooks import Webhook

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
from crdswatch.config.checks import WEBHOOK_SECRET_PREFIX as SECRET_PREFIX
from crdswatch.config.checks import check_webhook_secret
from crdswatch.errors import ConfigError, PermanentDeliveryError
from crdswatch.limits import DEFAULT_LIMITS
from crdswatch.model import BridgeNotice, SubscriberConfig
from crdswatch.render.bridge import bridge_webhook
from crdswatch.render.budget import WEBHOOK_BUDGET, Budget
from crdswatch.render.webhook import webhook_payload

__all__ = ["SECRET_PREFIX", "WebhookChannel", "encode_body", "generate_secret", "sign_headers"]


def generate_secret(nbytes: int = 32) -> str:
    """A fresh `whsec_<base64>` secret; the spec asks for 24 to 64 random bytes."""
    if not 24 <= nbytes <= 64:
        raise ValueError("webhook secrets must be 24 to 64 bytes")
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(nbytes)).decode("ascii")


def _check_secret(secret: str) -> str:
    """The config's own rule (config.checks.check_webhook_secret), named as the webhook secret."""
    try:
        return check_webhook_secret(secret)
    except ConfigError as exc:
        raise ConfigError(f"webhook secret: {exc}") from None


def encode_body(payload: Mapping[str, Any]) -> bytes:
    """Serialise once: the signature covers these exact bytes, so nothing may re-encode them."""
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode()


def sign_headers(secret: str, msg_id: str, timestamp: datetime, body: bytes) -> dict[str, str]:
    """The three Standard Webhooks headers for `body` sent as message `msg_id` at `timestamp`."""
    if timestamp.tzinfo is None:
        raise ValueError("webhook timestamp must be timezone-aware")
    # Webhook.sign() replaces tzinfo instead of converting, so hand it UTC already.
    utc = timestamp.astimezone(UTC)
    signature = Webhook(secret).sign(msg_id=msg_id, timestamp=utc, data=body.decode())
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(utc.timestamp())),
        "webhook-signature": signature,
    }


class WebhookChannel:
    """POSTs signed JSON to one receiver; raises typed delivery errors."""

    kind: ClassVar[str] = "webhook"
    budget: ClassVar[Budget] = WEBHOOK_BUDGET  # how much one notice may take here (render.budget)
    _LIMITS: ClassVar[ChannelLimits] = ChannelLimits(max_concurrency=4)

    def __init__(
        self,
        url: str,
        secret: str,
        http_client: httpx.AsyncClient,
        *,
        user_agent: str = "crdswatch",
        clock: Clock = utc_now,
        retry_after_max: float = DEFAULT_LIMITS.retry_after_max,
    ) -> None:
        self.url = url
        self._secret = _check_secret(secret)
        self._client = http_client
        self._user_agent = user_agent
        self._clock = clock
        self._retry_after_max = retry_after_max

    def __repr__(self) -> str:
        return f"WebhookChannel(url={self.url!r})"  # never the secret

    @classmethod
    def limits(cls, wiring: Wiring) -> ChannelLimits:
        return cls._LIMITS

    @classmethod
    def open(cls, target: str, config: SubscriberConfig, wiring: Wiring) -> WebhookChannel:
        url, secret = config_value(config, "webhook_url", cls.kind), config_value(config, "webhook_secret", cls.kind)
        try:
            return cls(url, secret, wiring.http, retry_after_max=wiring.limits.retry_after_max)
        except ConfigError as exc:  # a stored subscriber with a bad secret: no retry can fix it
            raise PermanentDeliveryError(f"webhook: {exc}") from exc

    def render(self, item: Item, key: str, now: datetime) -> Mapping[str, Any]:
        return bridge_webhook(item) if isinstance(item, BridgeNotice) else webhook_payload(item)

    async def send(self, rendered: Mapping[str, Any] | bytes, key: str, now: datetime | None = None) -> None:
        """Deliver one payload; `key` becomes webhook-id so receivers can dedupe, `now` the
        signed timestamp (default: the channel's clock)."""
        body = rendered if isinstance(rendered, bytes) else encode_body(rendered)
        when = now if now is not None else self._clock()
        headers = {
            "content-type": "application/json",
            "user-agent": self._user_agent,
            **sign_headers(self._secret, key, when, body),
        }
        # The URL is the receiver's credential: errors name its scheme and host only.
        parts = urlsplit(self.url)
        what = f"webhook {parts.scheme}://{parts.netloc.rpartition('@')[2]}"
        response = await post_bytes(self._client, self.url, body, headers, what)
        raise_for_status(response, what, self._clock(), retry_after_max=self._retry_after_max)
