"""Webhook channel: Standard Webhooks signatures checked by the reference verifier, error mapping."""

# Fixtures are imported by name and then requested as parameters, which pyflakes calls
# redefinition (F811); listing the module in conftest's pytest_plugins would make this unneeded.
# ruff: noqa: F811

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import httpx
import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from crdswatch.channels import WebhookChannel
from crdswatch.channels.webhook import generate_secret
from crdswatch.errors import ConfigError, PermanentDeliveryError, TransientDeliveryError
from tests.support.fixtures_channels import http_client, http_sink  # noqa: F401
from tests.support.http_sink import HttpSink, RecordedRequest, ScriptedResponse

PAYLOAD = {"type": "context.activated", "context": "jwst_1234.pmap", "note": "naïve <b>&"}


def signed_headers(request: RecordedRequest) -> dict[str, str]:
    return {k: v for k, v in request.headers.items() if k.startswith("webhook-")}


async def post(sink: HttpSink, client: httpx.AsyncClient, secret: str, when: datetime) -> RecordedRequest:
    channel = WebhookChannel(sink.url_for("/hook"), secret, client)
    await channel.send(PAYLOAD, "notice-42", when)
    return sink.requests[-1]


async def test_receiver_verifies_signature(http_sink: HttpSink, http_client: httpx.AsyncClient) -> None:
    secret = generate_secret()
    now = datetime.now(UTC)
    request = await post(http_sink, http_client, secret, now)
    assert request.headers["webhook-id"] == "notice-42"
    assert request.headers["webhook-timestamp"] == str(int(now.timestamp()))
    assert Webhook(secret).verify(request.body, signed_headers(request)) == PAYLOAD


async def test_non_utc_timestamp_is_converted(http_sink: HttpSink, http_client: httpx.AsyncClient) -> None:
    secret = generate_secret()
    local = datetime.now(timezone(timedelta(hours=-5)))
    request = await post(http_sink, http_client, secret, local)
    Webhook(secret).verify(request.body, signed_headers(request))


async def test_old_timestamp_and_tampering_are_rejected(
    http_sink: HttpSink, http_client: httpx.AsyncClient
) -> None:
    secret = generate_secret()
    old = await post(http_sink, http_client, secret, datetime.now(UTC) - timedelta(minutes=10))
    with pytest.raises(WebhookVerificationError, match="too old"):
        Webhook(secret).verify(old.body, signed_headers(old))
    fresh = await post(http_sink, http_client, secret, datetime.now(UTC))
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(fresh.body.replace(b"1234", b"9999"), signed_headers(fresh))
    with pytest.raises(WebhookVerificationError):
        Webhook(generate_secret()).verify(fresh.body, signed_headers(fresh))


async def test_5xx_and_retryable_4xx_are_transient(
    http_sink: HttpSink, http_client: httpx.AsyncClient
) -> None:
    http_sink.respond(
        ScriptedResponse(503, {"Retry-After": "120"}, "down"),
        ScriptedResponse(408, body="slow"),
        ScriptedResponse(429, {"Retry-After": "5"}),
    )
    channel = WebhookChannel(http_sink.url, generate_secret(), http_client)
    retry_hints, codes = [], []
    for _ in range(3):
        with pytest.raises(TransientDeliveryError) as caught:
            await channel.send(PAYLOAD, "k")
        retry_hints.append(caught.value.retry_after)
        codes.append(caught.value.code)
    assert retry_hints == [120.0, None, 5.0]
    assert codes == [503, 408, 429]


@pytest.mark.parametrize("status", [400, 401, 404, 410, 422, 301])
async def test_other_statuses_are_permanent(
    http_sink: HttpSink, http_client: httpx.AsyncClient, status: int
) -> None:
    http_sink.respond(ScriptedResponse(status, body="nope"))
    with pytest.raises(PermanentDeliveryError, match=str(status)) as caught:
        await WebhookChannel(http_sink.url, generate_secret(), http_client).send(PAYLOAD, "k")
    assert caught.value.code == status


async def test_timeout_is_transient(http_sink: HttpSink) -> None:
    http_sink.respond(ScriptedResponse(delay=0.5))
    async with httpx.AsyncClient(timeout=0.1) as client:
        with pytest.raises(TimeoutError) as caught:  # the built-in, as aiosmtplib does
            await WebhookChannel(http_sink.url, generate_secret(), client).send(PAYLOAD, "k")
    assert isinstance(caught.value, TransientDeliveryError) and caught.value.code is None


def test_secret_format_is_enforced(http_client: httpx.AsyncClient) -> None:
    client = http_client
    assert generate_secret().startswith("whsec_")
    for bad in ["plain-api-token", "whsec_!!!notbase64", "whsec_", "whsec_c2VjcmV0LTQ3MTU="]:  # the last: 11 bytes
        with pytest.raises(ConfigError) as raised:
            WebhookChannel("http://127.0.0.1:9/", bad, client)
        assert str(raised.value).startswith("webhook secret: ")
        assert not bad.removeprefix("whsec_") or bad.removeprefix("whsec_") not in str(raised.value)
    assert "whsec" not in repr(WebhookChannel("http://127.0.0.1:9/", generate_secret(), client))
