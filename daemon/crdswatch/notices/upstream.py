"""Upstream posts (ReDCaT LISTSERV lists, archive feeds): mail or feed entry -> a typed post (pure).

A post is what STScI's ReDCaT team announces on a `<instrument>_reffiles_upd` list. crdswatch
reads it, keeps the text, and pulls out what it can tie to CRDS: context names, mapping and
reference-file names, and ticket ids. Mail that is not a post (LISTSERV's command confirmation
request, list-owner notes) is classified as such, so it is forwarded to the admin instead.
"""

from __future__ import annotations

import email
import email.policy
import hashlib
import re
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import parseaddr, parsedate_to_datetime
from typing import Any, Literal

__all__ = [
    "TICKET_PREFIXES",
    "ConfirmationRequest",
    "Post",
    "PostKind",
    "References",
    "extract_references",
    "html_to_text",
    "infer_instruments",
    "parse_post",
    "post_from_feed_entry",
    "post_from_json",
    "post_to_json",
]

PostKind = Literal["post", "confirm-request", "admin"]

# Ticket systems that ReDCaT and CRDS deliveries cite. A general `[A-Z]+-\d+` would also catch
# "ISO-8859" or "UTF-8", so the known prefixes are listed.
TICKET_PREFIXES = ("REDCAT", "CRDS", "JWSTDMSSDPDR", "JSDP", "JP", "CCD", "INS", "HSTCAL", "RCAL")

_OBS = r"(?:jwst|hst|roman|tobs)"
_CONTEXT = re.compile(rf"\b{_OBS}_\d{{4}}\.pmap\b", re.IGNORECASE)
_MAPPING = re.compile(rf"\b{_OBS}(?:_[a-z0-9]+)+?_\d{{4}}\.[ir]map\b", re.IGNORECASE)
# JWST/Roman reference files carry their observatory prefix; HST ones are 9 base-36 characters,
# an underscore and a short suffix (e.g. 4bb1536oi_drk.fits).
_REFERENCE = re.compile(
    rf"\b(?:{_OBS}(?:_[a-z0-9]+)+\.(?:fits|asdf|json|yaml)|[0-9a-z]{{9}}_[a-z0-9]{{3,6}}\.fits)\b",
    re.IGNORECASE,
)
_TICKET = re.compile(r"\b(" + "|".join(TICKET_PREFIXES) + r")-(\d{1,7})\b")
_LISTSERV_CONFIRM_SUBJECT = re.compile(r"command confirmation request\s*\((\w+)\)", re.IGNORECASE)
_LISTSERV_CONFIRM_BODY = re.compile(r"reply to .{0,80}\b(?:type|with)\s+\"?ok\"?", re.IGNORECASE | re.DOTALL)
_INSTRUMENT_LIST = re.compile(r"^([a-z0-9]+)_reffiles_upd$", re.IGNORECASE)
_SPACES = re.compile(r"[ \t]+\n")
_BLANKS = re.compile(r"\n{3,}")


@dataclass(frozen=True)
class References:
    """CRDS names and tickets a post mentions, each in order of first appearance, lower-cased names."""

    contexts: tuple[str, ...] = ()
    mappings: tuple[str, ...] = ()
    files: tuple[str, ...] = ()
    tickets: tuple[str, ...] = ()

    def names(self) -> tuple[str, ...]:
        return self.contexts + self.mappings + self.files


@dataclass(frozen=True)
class ConfirmationRequest:
    """LISTSERV asking us to confirm a command: reply "OK" to `reply_to`, quoting `cookie`."""

    reply_to: str
    subject: str
    cookie: str | None


@dataclass(frozen=True)
class Post:
    """One upstream message as crdswatch keeps it."""

    upstream: str
    kind: PostKind
    message_id: str
    list_id: str | None
    sender: str
    date: str  # ISO-8601 UTC
    subject: str
    body: str
    link: str | None
    references: References
    confirmation: ConfirmationRequest | None = None


def _unique(items: list[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


def extract_references(text: str) -> References:
    """Context, mapping and file names and ticket ids mentioned in `text`."""
    return References(
        contexts=_unique([m.lower() for m in _CONTEXT.findall(text)]),
        mappings=_unique([m.lower() for m in _MAPPING.findall(text)]),
        files=_unique([m.lower() for m in _REFERENCE.findall(text)]),
        tickets=_unique([f"{prefix}-{number}" for prefix, number in _TICKET.findall(text)]),
    )


def infer_instruments(name: str) -> tuple[str, ...]:
    """`nirspec_reffiles_upd` -> ("nirspec",); anything else -> ()."""
    found = _INSTRUMENT_LIST.match(name)
    return (found.group(1).lower(),) if found else ()


def html_to_text(html: str) -> str:
    """Readable text of an HTML body (inscriptis keeps tables and lists legible)."""
    from inscriptis import get_text

    return str(get_text(html))


def _tidy(text: str, max_chars: int) -> str:
    text = _BLANKS.sub("\n\n", _SPACES.sub("\n", text.replace("\r\n", "\n").replace("\r", "\n")))
    text = text.strip()
    return text if len(text) <= max_chars else text[:max_chars].rstrip() + "\n[…]"


def _body_text(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    if part is not None:
        return str(part.get_content())
    part = message.get_body(preferencelist=("html",))
    if part is not None:
        return html_to_text(str(part.get_content()))
    return ""


def _iso_date(value: str | None, fallback: datetime) -> str:
    try:
        when = parsedate_to_datetime(value) if value else None
    except (TypeError, ValueError, IndexError):
        when = None
    when = when or fallback
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC).isoformat()


def _kind(message: EmailMessage, sender: str, subject: str, body: str, list_id: str | None) -> PostKind:
    local = sender.partition("@")[0].lower()
    if _LISTSERV_CONFIRM_SUBJECT.search(subject) or (local == "listserv" and _LISTSERV_CONFIRM_BODY.search(body)):
        return "confirm-request"
    if local in {"listserv", "mailer-daemon", "postmaster"} or local.startswith("owner-"):
        return "admin"
    if list_id is not None and (message.get("List-Id") or "").find(list_id) < 0:
        return "admin"  # not from the list we subscribed to
    return "post"


def parse_post(
    raw: bytes, *, upstream: str, list_id: str | None, received: datetime, max_body_chars: int = 20_000
) -> Post:
    """Read one delivered message. `received` dates a message without a usable Date header.

    The standard `email` package decodes quoted-printable, base64 and charsets; a message with
    no Message-ID gets one derived from its bytes, so redelivery still dedupes.
    """
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    sender = parseaddr(str(message.get("From", "")))[1]
    subject = " ".join(str(message.get("Subject", "")).split())
    body = _tidy(_body_text(message), max_body_chars)
    message_id = str(message.get("Message-ID") or "").strip() or f"<{hashlib.sha256(raw).hexdigest()}@crdswatch>"
    kind = _kind(message, sender, subject, body, list_id)
    confirmation = None
    if kind == "confirm-request":
        cookie = _LISTSERV_CONFIRM_SUBJECT.search(subject)
        confirmation = ConfirmationRequest(
            reply_to=parseaddr(str(message.get("Reply-To") or message.get("From", "")))[1],
            subject=subject,
            cookie=cookie.group(1) if cookie else None,
        )
    return Post(
        upstream=upstream,
        kind=kind,
        message_id=message_id,
        list_id=str(message.get("List-Id")) if message.get("List-Id") else None,
        sender=sender,
        date=_iso_date(message.get("Date"), received),
        subject=subject,
        body=body,
        link=str(message.get("Archived-At", "")).strip("<> ") or None,
        references=extract_references(f"{subject}\n{body}"),
        confirmation=confirmation,
    )


def post_from_feed_entry(
    *, upstream: str, entry_id: str, title: str, author: str, published: datetime, summary_html: str,
    link: str | None, max_body_chars: int = 20_000,
) -> Post:
    """One RSS/Atom archive entry (already parsed by feedparser) as a post."""
    body = _tidy(html_to_text(summary_html) if "<" in summary_html else summary_html, max_body_chars)
    subject = " ".join(title.split())
    return Post(
        upstream=upstream,
        kind="post",
        message_id=entry_id,
        list_id=None,
        sender=author,
        date=_iso_date(None, published),
        subject=subject,
        body=body,
        link=link,
        references=extract_references(f"{subject}\n{body}"),
    )


def post_to_json(post: Post) -> dict[str, Any]:
    """The stored form of a post (plain JSON types only)."""
    return asdict(post)


def post_from_json(data: dict[str, Any]) -> Post:
    refs = data.get("references") or {}
    confirmation = data.get("confirmation")
    return Post(
        **{k: v for k, v in data.items() if k not in ("references", "confirmation")},
        references=References(**{k: tuple(v) for k, v in refs.items()}),
        confirmation=ConfirmationRequest(**confirmation) if confirmation else None,
    )
