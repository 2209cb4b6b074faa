"""Value checks and constrained types shared by the configuration models (messages name no secrets)."""

from __future__ import annotations

import base64
import binascii
from email.utils import parseaddr
from typing import Annotated, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from pydantic import AfterValidator
from pydantic_core import PydanticCustomError

from crdswatch.errors import ConfigError
from crdswatch.redact import redact_url  # re-exported: the one scrubber lives in crdswatch.redact

__all__ = [
    "CHANGE_LEVELS",
    "OBSERVATORIES",
    "SMTP_DEFAULT_PORTS",
    "WEBHOOK_SECRET_MIN_BYTES",
    "WEBHOOK_SECRET_PREFIX",
    "ContextState",
    "EmailAddress",
    "Observatory",
    "States",
    "WebUrl",
    "Weekday",
    "check_address",
    "check_timezone",
    "check_url",
    "check_webhook_secret",
    "fail",
    "names",
    "redact_url",
]

Observatory = Literal["jwst", "hst", "roman"]
ContextState = Literal["latest", "build", "edit"]
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
OBSERVATORIES = ("jwst", "hst", "roman")
CHANGE_LEVELS = ("severe", "moderate", "trivial")
SMTP_DEFAULT_PORTS = {"starttls": 587, "tls": 465, "none": 25}



def fail(at: str, message: str) -> PydanticCustomError:
    """A validation error placed at the key path `at` (relative to the model raising it)."""
    return PydanticCustomError("crdswatch_config", "{message}", {"message": message, "at": at})


def check_address(value: str) -> str:
    """`value` stripped, if it is an e-mail address ("a@b.org" or "Name <a@b.org>")."""
    value = value.strip()
    _, addr = parseaddr(value)
    local, at, domain = addr.rpartition("@")
    if not (at and local and domain) or any(c.isspace() for c in addr):
        raise ValueError(f"{value!r} is not an e-mail address")
    return value


def check_url(value: str, schemes: tuple[str, ...] = ("http", "https"), *, show: bool = True) -> str:
    """`value` without trailing slashes, if it is an absolute URL with one of `schemes`."""
    value = value.strip()
    try:
        ok = (parts := urlsplit(value)).scheme in schemes and bool(parts.hostname)
    except ValueError:
        ok = False
    if not ok:
        wanted = " or ".join(f"{s}://" for s in schemes)
        raise ValueError(f"{value!r} is not an {wanted} URL" if show else f"must be an {wanted} URL")
    return value.rstrip("/")


def unique_states(states: list[ContextState]) -> list[ContextState]:
    if not states:
        raise ValueError("give at least one of 'latest', 'build', 'edit'")
    if len(set(states)) != len(states):
        raise ValueError(f"{states!r} lists a state twice")
    return states


EmailAddress = Annotated[str, AfterValidator(check_address)]
WebUrl = Annotated[str, AfterValidator(check_url)]
States = Annotated[list[ContextState], AfterValidator(unique_states)]


def names(values: list[str], what: str) -> list[str]:
    out: list[str] = []
    for value in values:
        name = value.strip().lower()
        if not name:
            raise ValueError(f"empty {what} name")
        if name not in out:
            out.append(name)
    return out


WEBHOOK_SECRET_PREFIX = "whsec_"
WEBHOOK_SECRET_MIN_BYTES = 16


def check_webhook_secret(secret: str) -> str:
    """`secret`, if it is a Standard Webhooks secret: "whsec_" + base64 of at least 16 bytes.

    The one rule, used by config validation and by the webhook channel (a subscriber stored by the
    CLI is not validated as config). standardwebhooks silently accepts a prefix-less secret;
    insisting on the documented form catches a pasted API token at start-up rather than producing
    signatures nobody can verify. Raises ConfigError (a ValueError); the secret is never echoed.
    """
    key = b""
    if secret.startswith(WEBHOOK_SECRET_PREFIX):
        try:
            key = base64.b64decode(secret[len(WEBHOOK_SECRET_PREFIX):], validate=True)
        except (binascii.Error, ValueError):
            key = b""
    if not key:
        raise ConfigError("must be 'whsec_' followed by base64 (a Standard Webhooks secret)")
    if len(key) < WEBHOOK_SECRET_MIN_BYTES:
        raise ConfigError(f"too short: a webhook secret needs at least {WEBHOOK_SECRET_MIN_BYTES} bytes "
                          "(base64 after 'whsec_')")
    return secret


def check_timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ValueError, LookupError):  # ZoneInfoNotFoundError is a KeyError
        raise ValueError(f"{value!r} is not a time zone (like UTC or America/New_York)") from None
    return value


