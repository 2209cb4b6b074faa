"""Confirmation tokens: bound to list, address and action, expiring, checked in constant time (pure).

A token is 40 lower-case hex digits (it has to fit an address local part, `<list>-confirm+TOKEN@D`,
and survive MTAs that change case): an HMAC-SHA256 of what it confirms, keyed by the
`[inbound] token_secret`, with a random nonce. The store keeps a digest of the token, the claim
and whether it was used; `check_token` recomputes the HMAC from the stored claim, so a token only
confirms the exact (list, address, action) it was made for, and a forged one matches nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from crdswatch.errors import TokenProblem

__all__ = [
    "DEFAULT_TTL",
    "TOKEN_LENGTH",
    "TokenClaim",
    "TokenProblem",
    "check_token",
    "make_token",
    "token_digest",
]

DEFAULT_TTL = timedelta(hours=48)  # as LISTSERV: a confirmation request lapses after two days
TOKEN_LENGTH = 40
TokenAction = Literal["subscribe", "unsubscribe"]


@dataclass(frozen=True)
class TokenClaim:
    """What a token confirms, as stored next to its digest."""

    list_name: str
    address: str
    action: TokenAction
    nonce: str
    expires_at: datetime
    used_at: datetime | None = None
    # A subscribe's narrowing chosen on the form ({"reftypes": [...], "parameters": {...}}),
    # applied when confirmed; part of what the token is bound to.
    narrowing: Mapping[str, Any] | None = None


def _message(claim: TokenClaim) -> bytes:
    # NUL cannot occur in a list name or an address, so no two claims serialise alike.
    parts = [claim.list_name.lower(), claim.address.lower(), claim.action, claim.nonce,
             claim.expires_at.isoformat(timespec="seconds")]
    if claim.narrowing:  # left out when empty: tokens made before narrowing existed still check
        parts.append(json.dumps(claim.narrowing, sort_keys=True, separators=(",", ":")))
    return "\0".join(parts).encode("utf-8")


def make_token(secret: bytes, claim: TokenClaim) -> str:
    """The token for `claim`; `claim.nonce` must be fresh randomness (secrets.token_hex)."""
    if not secret:
        raise ValueError("token secret is empty")
    return hmac.new(secret, _message(claim), hashlib.sha256).hexdigest()[:TOKEN_LENGTH]


def token_digest(token: str) -> str:
    """What the store indexes: a database reader cannot turn it back into a usable token."""
    return hashlib.sha256(token.strip().lower().encode("ascii", "replace")).hexdigest()


def check_token(
    secret: bytes, token: str, claim: TokenClaim | None, now: datetime, *, list_name: str | None = None
) -> TokenClaim:
    """`claim` if `token` may be redeemed now (for `list_name`, when given); TokenProblem if not."""
    if claim is None:
        raise TokenProblem("unknown confirmation token")
    if not hmac.compare_digest(make_token(secret, claim), token.strip().lower()):
        raise TokenProblem("confirmation token does not match what it was issued for")
    if list_name is not None and list_name.lower() != claim.list_name.lower():
        raise TokenProblem(f"this confirmation token is for list {claim.list_name}, not {list_name}")
    if claim.used_at is not None:
        raise TokenProblem("this confirmation token was already used")
    if now >= claim.expires_at:
        raise TokenProblem("this confirmation token has expired; send a new request")
    return claim
