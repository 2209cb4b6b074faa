"""Shared pieces of the delivery channels: the paused-channel error and HTTP outcome mapping."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx

from crdswatch.errors import PermanentDeliveryError, TransientDeliveryError

__all__ = [
    "ChannelPausedError",
    "Clock",
    "parse_retry_after",
    "post_bytes",
    "raise_for_status",
    "utc_now",
]

Clock = Callable[[], datetime]

# Longest excerpt of a peer's error body kept in an exception message; bodies can be HTML pages.
_BODY_EXCERPT = 200


class ChannelPausedError(TransientDeliveryError):
    """The channel itself is broken (bad credentials, bad certificate, bad URL): pause it and alert.

    It is transient for the item, which did nothing wrong and must not be dead-lettered, but
    retrying one item at a time is pointless until an operator fixes the channel.
    """


def utc_now() -> datetime:
    """The default clock; channels accept another so tests need no real time."""
    return datetime.now(UTC)


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP-date (RFC 9110)."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None  # an unreadable hint is no hint; the outbox falls back to its own backoff
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


async def post_bytes(
    client: httpx.AsyncClient, url: str, body: bytes, headers: Mapping[str, str], what: str
) -> httpx.Response:
    """POST `body`, turning transport failures into typed delivery errors."""
    try:
        return await client.post(url, content=body, headers=dict(headers))
    except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
        raise ChannelPausedError(f"{what}: URL is unusable: {exc}") from exc
    except httpx.TimeoutException as exc:
        raise TransientDeliveryError(f"{what}: timed out: {exc!r}") from exc
    except httpx.TransportError as exc:
        raise TransientDeliveryError(f"{what}: transport error: {exc!r}") from exc


def raise_for_status(
    response: httpx.Response,
    what: str,
    now: datetime,
    transient_statuses: frozenset[int] = frozenset({408, 429}),
) -> None:
    """Return on 2xx; raise transient for 5xx and `transient_statuses`, permanent otherwise."""
    status = response.status_code
    if 200 <= status < 300:
        return
    excerpt = response.text[:_BODY_EXCERPT].strip()
    message = f"{what}: HTTP {status}: {excerpt}" if excerpt else f"{what}: HTTP {status}"
    if status >= 500 or status in transient_statuses:
        retry_after = parse_retry_after(response.headers.get("retry-after"), now)
        raise TransientDeliveryError(message, retry_after=retry_after)
    # 3xx lands here too: following a redirect with a signed body would leak it to another host.
    raise PermanentDeliveryError(message)
