"""Header helpers for notice e-mail: list headers, and no CR/LF from untrusted text in any header."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from email.headerregistry import HeaderRegistry, UnstructuredHeader
from email.message import EmailMessage
from email.policy import EmailPolicy, default
from email.utils import format_datetime
from functools import lru_cache
from typing import Any

__all__ = [
    "NOTICE_POLICY",
    "RAW_HEADERS",
    "apply_headers",
    "build_headers",
    "mailing_list_headers",
    "message_id",
    "normalise_message_id",
    "sanitise_header",
]

# Headers whose value must reach the wire exactly as built: URIs in angle brackets (RFC 2369,
# 2919, 8058). Python's default policy folds a long URI by turning it into RFC 2047 encoded words
# ("=?utf-8?q?=3Chttps=3A..."), which no mail client reads as a link.
RAW_HEADERS = (
    "List-Id", "List-Help", "List-Subscribe", "List-Unsubscribe", "List-Unsubscribe-Post",
    "List-Archive", "List-Post", "List-Owner",
)
_FOLD_AT = 78


class RawHeader(UnstructuredHeader):  # the registry mixes BaseHeader in (typeshed does not know)
    """An ASCII header folded only between its comma-separated items, never encoded."""

    @classmethod
    def parse(cls, value: str, kwds: dict[str, Any]) -> None:
        if not value.isascii():
            raise ValueError(f"{kwds.get('name', 'header')} must be ASCII: {value!r}")
        super().parse(value, kwds)

    def fold(self, *, policy: Any) -> str:
        items = [item.strip() for item in re.split(r",\s*(?=<)", str(self))]
        lines = [f"{getattr(self, 'name', '')}: {items[0]}"]
        for item in items[1:]:
            if len(lines[-1]) + 2 + len(item) <= _FOLD_AT:
                lines[-1] += f", {item}"
            else:
                lines[-1] += ","
                lines.append(f" {item}")
        return str(policy.linesep).join(lines) + str(policy.linesep)


def _registry() -> HeaderRegistry:
    registry = HeaderRegistry()
    for name in RAW_HEADERS:
        registry.map_to_type(name.lower(), RawHeader)  # type: ignore[arg-type]
    return registry


# The policy of every notice and list mail: List-* headers go out as raw bytes. Generators that
# re-serialise with another policy (aiosmtplib uses email.policy.SMTP) still call the header's own
# fold(), so this survives sending.
NOTICE_POLICY: EmailPolicy[EmailMessage] = default.clone(header_factory=_registry())

# CR and LF are what header injection needs; the rest of C0/C1 and the Unicode line and paragraph
# separators are included because some mail software treats them as line breaks too.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
_SPACES = re.compile(r" {2,}")
_MESSAGE_ID = re.compile(r"<?([^<>\s@]+@[^<>\s@]+)>?")


def sanitise_header(value: str) -> str:
    """Fold any control character run (CR, LF, tab, NUL, ...) to one space; trim the result."""
    if value.isascii() and value.isprintable() and "  " not in value:  # the common case, decided in C
        return value.strip()
    return _SPACES.sub(" ", _CONTROL.sub(" ", value)).strip()


@lru_cache(maxsize=8)
def _date_header(second: datetime) -> str:
    return format_datetime(second)


def date_header(date: datetime) -> str:
    """`format_datetime(date)`, once per second: the header has no fractions, and a fan-out
    stamps thousands of messages within the same few seconds."""
    return _date_header(date.replace(microsecond=0))


def message_id(key: str, domain: str) -> str:
    """An RFC 5322 Message-ID derived from an outbox key, so a re-send carries the same id."""
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]
    return f"<crdswatch.{digest}@{domain}>"


def normalise_message_id(message_id: str) -> str:
    """`<left@right>` from either `left@right` or `<left@right>`; anything else is refused."""
    match = _MESSAGE_ID.fullmatch(message_id.strip())
    if match is None:
        raise ValueError(f"not a Message-ID: {message_id!r}")
    return f"<{match.group(1)}>"


def _list_unsubscribe(url: str | None, mailto: str | None) -> dict[str, str]:
    targets = [f"<{sanitise_header(t)}>" for t in (url, mailto) if t]
    if not targets:
        return {}
    headers = {"List-Unsubscribe": ", ".join(targets)}
    # RFC 8058 one-click only applies to an https URI; a mailto or http target must not claim it.
    if url and url.lower().startswith("https://"):
        headers["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    return headers


def _list_id(list_id: str, list_name: str | None) -> str:
    ident = sanitise_header(list_id).strip("<>")
    if not ident or any(c in ident for c in " <>"):
        raise ValueError(f"not a List-Id identifier: {list_id!r}")
    name = sanitise_header(list_name or "").replace('"', "'")
    return f'"{name}" <{ident}>' if name else f"<{ident}>"


def build_headers(
    *,
    message_id: str,
    date: datetime,
    list_id: str,
    list_name: str | None = None,
    unsubscribe_url: str | None = None,
    unsubscribe_mailto: str | None = None,
    subject: str | None = None,
    sender: str | None = None,
    to: Sequence[str] = (),
) -> dict[str, str]:
    """The headers of one notice, every value sanitised; `date` is given, never read from a clock."""
    if date.tzinfo is None:
        raise ValueError("Date must be timezone-aware")
    headers: dict[str, str] = {}
    if subject is not None:
        headers["Subject"] = sanitise_header(subject)
    if sender is not None:
        headers["From"] = sanitise_header(sender)
    if to:
        headers["To"] = ", ".join(sanitise_header(address) for address in to)
    headers["Message-ID"] = normalise_message_id(message_id)
    headers["Date"] = date_header(date)
    headers["List-Id"] = _list_id(list_id, list_name)
    headers.update(_list_unsubscribe(unsubscribe_url, unsubscribe_mailto))
    # RFC 3834: tells auto-responders (vacation replies, bounces-to-list) not to answer us.
    headers["Auto-Submitted"] = "auto-generated"
    return headers


def mailing_list_headers(
    *,
    name: str,
    domain: str,
    description: str = "",
    archive_url: str | None = None,
    unsubscribe_url: str | None = None,
) -> dict[str, str]:
    """RFC 2369/2919/8058 headers of a mail to members of list `name` at `domain` (ASCII only).

    The `mailto:` unsubscribe comes first (every client can use it); the https one-click link
    (RFC 8058) follows, with List-Unsubscribe-Post only when that link is https.
    """
    def mailto(suffix: str, query: str = "") -> str:
        return f"<mailto:{name}-{suffix}@{domain}{query}>"

    phrase = sanitise_header(description).replace('"', "'").replace("\\", "")
    headers = {
        "List-Id": f'"{phrase}" <{name}.{domain}>' if phrase else f"<{name}.{domain}>",
        "List-Help": mailto("request", "?subject=help"),
        "List-Subscribe": mailto("join"),
        "List-Unsubscribe": ", ".join([mailto("leave")] + ([f"<{unsubscribe_url}>"] if unsubscribe_url else [])),
    }
    if unsubscribe_url and unsubscribe_url.lower().startswith("https://"):
        headers["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    if archive_url:
        headers["List-Archive"] = f"<{archive_url}>"
    headers["List-Post"] = "NO"  # announcements only: members cannot post (RFC 2369 section 3.4)
    headers["Precedence"] = "list"
    headers["Auto-Submitted"] = "auto-generated"
    return headers


def apply_headers(msg: EmailMessage, headers: Mapping[str, str]) -> EmailMessage:
    """Set each header on `msg`, replacing any earlier value; values are sanitised again here."""
    for name, value in headers.items():
        del msg[name]
        msg[sanitise_header(name)] = sanitise_header(value)
    return msg
