"""List addresses and e-mail commands, Mailman 3 and LISTSERV style; loop detection (pure).

`<list>-join@D` subscribes, `<list>-leave@D` unsubscribes, `<list>-request@D` reads commands,
`<list>-confirm+TOKEN@D` confirms, `<list>-bounces+LOCAL=DOMAIN@D` receives bounces (VERP).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from email.utils import getaddresses
from typing import Literal

__all__ = [
    "LIST_NAME",
    "Action",
    "Command",
    "Recipient",
    "Role",
    "automatic_reason",
    "bounce_address",
    "canonical_address",
    "list_address",
    "parse_commands",
    "parse_recipient",
    "verp_address",
]

LIST_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
Role = Literal["subscribe", "unsubscribe", "request", "confirm", "bounces", "post"]
Action = Literal["subscribe", "unsubscribe"]

# Suffix -> role. Mailman 3 names first, then the LISTSERV-style "-request" spellings the ReDCaT
# lists use ("miri_reffiles_upd-subscribe-request@...").
_SUFFIXES: dict[str, Role] = {
    "join": "subscribe",
    "subscribe": "subscribe",
    "subscribe-request": "subscribe",
    "leave": "unsubscribe",
    "unsubscribe": "unsubscribe",
    "unsubscribe-request": "unsubscribe",
    "request": "request",
    "confirm": "confirm",
    "bounces": "bounces",
}
# Longest first, so "x-subscribe-request" is not read as list "x-subscribe" with role "request".
_BY_LENGTH = sorted(_SUFFIXES, key=len, reverse=True)
_TOKEN = re.compile(r"[0-9a-f]{40}")
_MAX_COMMAND_LINES = 10  # Mailman reads at most this many body lines for commands


@dataclass(frozen=True)
class Recipient:
    """Who an inbound mail was addressed to: which list, in which role, and the '+' extension."""

    list_name: str
    role: Role
    extension: str = ""  # the confirmation token, or the VERP-encoded member address

    @property
    def verp_member(self) -> str | None:
        """The member a VERP bounce address names (`local=domain` -> `local@domain`), if any."""
        if self.role != "bounces" or "=" not in self.extension:
            return None
        local, _, domain = self.extension.rpartition("=")
        return canonical_address(f"{local}@{domain}") if local and domain else None


@dataclass(frozen=True)
class Command:
    """One e-mail command: subscribe, unsubscribe, confirm (with its token), help, or unknown."""

    kind: Literal["subscribe", "unsubscribe", "confirm", "help", "unknown"]
    argument: str = ""


def canonical_address(address: str) -> str:
    """The form addresses are compared and stored in: trimmed, lower case (as Mailman compares)."""
    return address.strip().strip("<>").strip().lower()


def list_address(name: str, domain: str, suffix: str = "", extension: str = "") -> str:
    """`name[-suffix][+extension]@domain`, e.g. list_address("x", "d.org", "join")."""
    local = f"{name}-{suffix}" if suffix else name
    return f"{local}+{extension}@{domain}" if extension else f"{local}@{domain}"


def verp_address(name: str, domain: str, member: str) -> str:
    """The VERP envelope sender for `member`: `<list>-bounces+<local>=<domain>@D`."""
    local, _, member_domain = canonical_address(member).rpartition("@")
    return list_address(name, domain, "bounces", f"{local}={member_domain}")


def bounce_address(name: str, domain: str) -> str:
    return list_address(name, domain, "bounces")


def parse_recipient(address: str, domain: str, lists: Collection[str]) -> Recipient | None:
    """Which list and role `address` is for; None when it is none of ours (550 at RCPT time).

    List names match case-insensitively: MTAs may change the case of a local part.
    """
    local, at, rcpt_domain = canonical_address(address).rpartition("@")
    if not at or rcpt_domain != domain.lower() or not local:
        return None
    base, _, extension = local.partition("+")
    names = {n.lower(): n for n in lists}
    if base in names and not extension:
        return Recipient(names[base], "post")
    for suffix in _BY_LENGTH:
        if base.endswith("-" + suffix) and base[: -len(suffix) - 1] in names:
            role = _SUFFIXES[suffix]
            if extension and role not in ("confirm", "bounces"):
                return None
            if role == "confirm" and not _TOKEN.fullmatch(extension):
                return None
            return Recipient(names[base[: -len(suffix) - 1]], role, extension)
    return None


def _command(line: str) -> Command | None:
    words = line.strip().split()
    if not words:
        return None
    verb = words[0].lower().rstrip(":")
    if verb in ("subscribe", "join"):
        return Command("subscribe")
    if verb in ("unsubscribe", "leave", "signoff", "signoff:"):
        return Command("unsubscribe")
    if verb == "help":
        return Command("help")
    if verb == "confirm" and len(words) >= 2 and _TOKEN.fullmatch(words[1].lower()):
        return Command("confirm", words[1].lower())
    return Command("unknown", line.strip()[:80])


def _subject_command(subject: str) -> Command | None:
    text = subject.strip()
    while True:  # a reply to the confirmation mail: "Re: AW: confirm <token>"
        stripped = re.sub(r"^\s*(re|aw|sv|fw|fwd)\s*:\s*", "", text, flags=re.IGNORECASE)
        if stripped == text:
            break
        text = stripped
    found = re.search(r"\bconfirm\s+([0-9a-fA-F]{40})\b", text)
    if found:
        return Command("confirm", found.group(1).lower())
    return _command(text)


def parse_commands(subject: str, body_lines: Sequence[str]) -> list[Command]:
    """Commands from the Subject, then the first body lines (quoted text and signatures skipped)."""
    out: list[Command] = []
    first = _subject_command(subject) if subject.strip() else None
    if first is not None:
        out.append(first)
    for line in list(body_lines)[:_MAX_COMMAND_LINES]:
        text = line.strip()
        if text in ("--", "-- ") or text.lower() in ("end", "stop"):
            break  # a signature follows, or the sender said the commands are over
        if not text or text.startswith(">"):
            continue
        found = re.search(r"\bconfirm\s+([0-9a-fA-F]{40})\b", text)
        command = Command("confirm", found.group(1).lower()) if found else _command(text)
        if command is not None:
            out.append(command)
    return out


def _header(headers: Mapping[str, str], name: str) -> str:
    for key, value in headers.items():
        if key.lower() == name.lower():
            return str(value)
    return ""


def automatic_reason(
    mail_from: str, headers: Mapping[str, str], domain: str, loop_id: str
) -> str | None:
    """Why a mail must not be answered (it is automatic, a bounce or our own), or None.

    RFC 3834: never auto-reply to an empty return path, to `Auto-Submitted` other than `no`, or
    to bulk and list mail; our own domain and our `X-Loop` mark mail we sent ourselves.
    """
    sender = canonical_address(mail_from)
    if not sender or sender == "<>":
        return "empty return path"
    auto = _header(headers, "Auto-Submitted").split(";")[0].strip().lower()
    if auto and auto != "no":
        return f"Auto-Submitted: {auto}"
    precedence = _header(headers, "Precedence").strip().lower()
    if precedence in ("bulk", "junk", "list"):
        return f"Precedence: {precedence}"
    if loop_id.lower() in _header(headers, "X-Loop").lower():
        return "X-Loop: ours"
    if _header(headers, "X-Autoreply") or _header(headers, "X-Autorespond"):
        return "auto-responder header"
    from_addresses = [a for _, a in getaddresses([_header(headers, "From")]) if a]
    for address in [sender, *from_addresses]:
        if canonical_address(address).rpartition("@")[2] == domain.lower():
            return "mail from our own domain"
    return None
