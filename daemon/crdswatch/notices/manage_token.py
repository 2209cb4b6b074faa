"""Signed, expiring links to a subscriber's own settings page, /manage/<token> (pure).

The token names the subscriber and an expiry; it is signed with the same secret as the
unsubscribe links, under its own label, so an unsubscribe token never opens a manage page.
"""

from __future__ import annotations

import base64
import hmac
import json
from datetime import datetime, timedelta
from urllib.parse import quote

from crdswatch.notices.unsubscribe import BadToken, compact_json, sign

__all__ = ["MANAGE_TTL", "make_manage_token", "manage_url", "read_manage_token"]

MANAGE_TTL = timedelta(days=60)  # a notice's footer link keeps working for two months
_LABEL = b"crdswatch manage v1:"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def make_manage_token(secret: bytes, subscriber: str, expires: datetime) -> str:
    body = _b64(compact_json([subscriber, int(expires.timestamp())]).encode("ascii"))
    mac = sign(secret, _LABEL + body.encode("ascii"))
    return f"{body}.{_b64(mac)}"


def read_manage_token(secret: bytes, token: str, now: datetime) -> str:
    """The subscriber a valid, unexpired token names; BadToken otherwise."""
    try:
        body, mac = token.split(".", 1)
        expected = sign(secret, _LABEL + body.encode("ascii"))
        if not hmac.compare_digest(expected, _unb64(mac)):
            raise BadToken("this link's signature does not match")
        subscriber, expires = json.loads(_unb64(body))
    except (ValueError, UnicodeError, TypeError) as exc:
        raise BadToken(f"not a valid settings link: {exc}") from None
    if not isinstance(subscriber, str) or not isinstance(expires, int):
        raise BadToken("not a valid settings link")
    if now.timestamp() > expires:
        raise BadToken("this settings link has expired; the link in your newest notice works")
    return subscriber


def manage_url(public_url: str, secret: bytes, subscriber: str, now: datetime) -> str:
    return f"{public_url.rstrip('/')}/manage/{quote(make_manage_token(secret, subscriber, now + MANAGE_TTL))}"
