"""What every delivery channel shares: the `Channel` protocol, the wiring, HTTP outcome mapping.

A channel kind is one class with `kind`, its declared `limits`, `open` (one subscriber's
destination), `render` (a notice or bridge notice, through crdswatch.render) and
`send(rendered, key, now)`. `crdswatch.channels.CHANNELS` lists them; the drain dispatches
through that registry only, so a new channel is one module and one registry line.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, ClassVar, Protocol, Self, TypeVar

import httpx

from crdswatch.errors import (
    ChannelPausedError,
    DeliveryConnectionError,
    DeliveryTimeoutError,
    PermanentDeliveryError,
    TransientDeliveryError,
)
from crdswatch.limits import DEFAULT_LIMITS, Limits
from crdswatch.model import BridgeNotice, Notice, SubscriberConfig, utc_now
from crdswatch.redact import redact_secret_url
from crdswatch.render.budget import Budget

if TYPE_CHECKING:
    from crdswatch.channels.mail import MailWiring

__all__ = [
    "Channel",
    "ChannelLimits",
    "ChannelPausedError",
    "Clock",
    "Item",
    "Wiring",
    "parse_retry_after",
    "post_bytes",
    "raise_for_status",
    "utc_now",
]

Clock = Callable[[], datetime]
Item = Notice | BridgeNotice  # what the outbox holds for one send: a notice or an upstream post
R = TypeVar("R")


@dataclass(frozen=True)
class ChannelLimits:
    """What a channel kind declares about itself; the drain enforces it."""

    max_concurrency: int  # sends of this kind in flight at once in one process


@dataclass(frozen=True)
class Wiring:
    """What the channels of one process share: one HTTP client, the e-mail side (None without [smtp])."""

    http: httpx.AsyncClient
    mail: MailWiring | None = None
    limits: Limits = DEFAULT_LIMITS  # retry_after_max, send_deadline


class Channel(Protocol[R]):
    """One kind of channel (see the module docstring); R is what its `render` produces."""

    kind: ClassVar[str]
    budget: ClassVar[Budget]  # how much one notice may take here (render.budget)

    @classmethod
    def limits(cls, wiring: Wiring) -> ChannelLimits: ...

    @classmethod
    def open(cls, target: str, config: SubscriberConfig, wiring: Wiring) -> Self:
        """The channel to one destination: `target` is what follows "kind:" in the outbox row,
        `config` the stored subscriber. A subscriber without the keys it needs is a
        PermanentDeliveryError."""
        ...

    def render(self, item: Item, key: str, now: datetime) -> R: ...

    async def send(self, rendered: R, key: str, now: datetime) -> None:
        """Deliver; `key` is the row's idempotency key (Message-ID, webhook-id). Raises DeliveryError."""
        ...


def config_value(config: SubscriberConfig, key: str, kind: str) -> str:
    """A subscriber setting a channel needs (by its stored key); its absence is the row's permanent failure."""
    value = config.setting(key)
    if not value:
        raise PermanentDeliveryError(f"{kind}: subscriber has no {key}")
    return str(value)

# Longest excerpt of a peer's error body kept in an exception message; bodies can be HTML pages.
_BODY_EXCERPT = 200
# Bytes of a reply body read at most (UTF-8: up to 4 bytes a character); the rest is never read.
_REPLY_READ = 4 * _BODY_EXCERPT


def parse_retry_after(value: str | None, now: datetime, cap: float = DEFAULT_LIMITS.retry_after_max) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP-date (RFC 9110).

    Never raises: a hint beyond `cap` ([limits] retry_after_max) is cut to it (999999999 s, a
    date in year 9999, `1e20`, `inf`); a negative, NaN or unreadable one is no hint (None), so the
    outbox falls back to its own backoff. A date already past means "now" (0).
    """
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)  # "1e20" and "inf" read fine; they are cut to `cap` below
    except ValueError:
        delta = _retry_date(text, now)
        return None if delta is None else min(max(0.0, delta), cap)
    if math.isnan(seconds) or seconds < 0:
        return None  # delta-seconds are 1*DIGIT: a negative or NaN delay is no hint at all
    return min(seconds, cap)


def _retry_date(text: str, now: datetime) -> float | None:
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, OverflowError, IndexError):
        return None  # an unreadable hint is no hint; the outbox falls back to its own backoff
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    try:
        return (when - now).total_seconds()
    except (OverflowError, TypeError):
        return None


async def post_bytes(
    client: httpx.AsyncClient, url: str, body: bytes, headers: Mapping[str, str], what: str
) -> httpx.Response:
    """POST `body`, turning transport failures into typed delivery errors. Of the reply only the
    status, the headers and the first bytes of the body (enough for an error excerpt) are read:
    a receiver answering with an endless body cannot grow the daemon (issue 9, class 1)."""
    try:
        async with client.stream("POST", url, content=body, headers=dict(headers)) as response:
            kept = bytearray()
            async for chunk in response.aiter_raw():
                kept += chunk
                if len(kept) >= _REPLY_READ:
                    break
            # the head as sent, the body as far as read: undecoded, so no length or encoding applies
            head = [(k, v) for k, v in response.headers.multi_items()
                    if k.lower() not in ("content-length", "content-encoding", "transfer-encoding")]
            return httpx.Response(response.status_code, headers=head, content=bytes(kept[:_REPLY_READ]),
                                  request=response.request)
    except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
        raise ChannelPausedError(f"{what}: URL is unusable: {redact_secret_url(str(exc), url)}") from exc
    except httpx.TimeoutException as exc:
        raise DeliveryTimeoutError(f"{what}: timed out: {redact_secret_url(repr(exc), url)}") from exc
    except httpx.TransportError as exc:
        raise DeliveryConnectionError(f"{what}: transport error: {redact_secret_url(repr(exc), url)}") from exc


def raise_for_status(
    response: httpx.Response,
    what: str,
    now: datetime,
    transient_statuses: frozenset[int] = frozenset({408, 429}),
    retry_after_max: float = DEFAULT_LIMITS.retry_after_max,
) -> None:
    """Return on 2xx; raise transient for 5xx and `transient_statuses`, permanent otherwise."""
    status = response.status_code
    if 200 <= status < 300:
        return
    excerpt = response.text[:_BODY_EXCERPT].strip()
    try:  # the URL is the receiver's credential, and error pages echo it
        excerpt = redact_secret_url(excerpt, str(response.request.url))
    except RuntimeError:  # a response built without a request (tests): nothing to hide
        pass
    message = f"{what}: HTTP {status}: {excerpt}" if excerpt else f"{what}: HTTP {status}"
    if status >= 500 or status in transient_statuses:
        retry_after = parse_retry_after(response.headers.get("retry-after"), now, retry_after_max)
        raise TransientDeliveryError(message, retry_after=retry_after, code=status)
    # 3xx lands here too: following a redirect with a signed body would leak it to another host.
    raise PermanentDeliveryError(message, code=status)
