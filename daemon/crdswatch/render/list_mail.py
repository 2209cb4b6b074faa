"""The mails a list sends about itself: confirmations, help, results, bounce warnings (pure).

Each is an automatic reply (RFC 3834 `Auto-Submitted: auto-replied`) carrying our `X-Loop`, so
a mail loop with another robot stops at its first turn.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime

from crdswatch.notices.list_spec import ListSpec
from crdswatch.render.email_headers import (
    NOTICE_POLICY,
    mailing_list_headers,
    normalise_message_id,
    sanitise_header,
)

__all__ = [
    "admin_message",
    "confirmation_message",
    "help_message",
    "result_message",
    "warning_message",
]

_VERBS = {"subscribe": ("join", "to"), "unsubscribe": ("leave", "from")}


def _message(
    spec: ListSpec, *, to: str, subject: str, body: str, date: datetime, message_id: str,
    sender: str | None = None, in_reply_to: str | None = None, loop_id: str, auto: str = "auto-replied",
) -> EmailMessage:
    msg = EmailMessage(policy=NOTICE_POLICY)
    msg["From"] = sender or spec.address("request")
    msg["To"] = sanitise_header(to)
    msg["Subject"] = sanitise_header(subject)
    msg["Date"] = format_datetime(date)
    msg["Message-ID"] = normalise_message_id(message_id)
    if in_reply_to:
        try:
            msg["In-Reply-To"] = normalise_message_id(in_reply_to)
        except ValueError:
            pass  # a malformed Message-ID in the request is theirs; our reply stands without it
    for name, value in mailing_list_headers(name=spec.name, domain=spec.domain,
                                            description=spec.description).items():
        if name.startswith("List-") and name not in ("List-Post", "List-Unsubscribe-Post"):
            msg[name] = value
    msg["Auto-Submitted"] = auto
    msg["X-Loop"] = loop_id
    msg["Precedence"] = "bulk"
    msg.set_content(body, charset="utf-8")
    return msg


def _footer(spec: ListSpec) -> str:
    return (f"\n-- \n{spec.label}\nJoin: {spec.address('join')}   Leave: {spec.address('leave')}   "
            f"Help: {spec.address('request')} (subject: help)\n")


def confirmation_message(
    spec: ListSpec, *, to: str, action: str, token: str, confirm_url: str | None, hours: float,
    date: datetime, message_id: str, loop_id: str, in_reply_to: str | None = None, narrowing: str = "",
) -> EmailMessage:
    """"Did you ask for this?": the reply address and the link both carry the single-use token."""
    verb, prep = _VERBS[action]
    lines = [f"We received a request to {verb} {to} {prep} the {spec.label} mailing list."]
    if narrowing:
        lines.append(f"Notices would be narrowed to: {narrowing}.")
    lines += [
        "",
        "To confirm, do one of these:",
        f"  - reply to this message, keeping the Subject line (\"confirm {token}\"), or",
        f"  - send a blank message to {spec.address('confirm', token)}",
    ]
    if confirm_url:
        lines.append(f"  - open {confirm_url} and press the button")
    lines += [
        "",
        f"This request expires in {hours:g} hours and can be used once.",
        "If you did not ask for this, ignore this message: nothing will change.",
    ]
    return _message(spec, to=to, subject=f"confirm {token}", body="\n".join(lines) + "\n" + _footer(spec),
                    date=date, message_id=message_id, sender=spec.address("confirm", token),
                    in_reply_to=in_reply_to, loop_id=loop_id)


def result_message(
    spec: ListSpec, *, to: str, outcome: str, date: datetime, message_id: str, loop_id: str,
    in_reply_to: str | None = None,
) -> EmailMessage:
    """Welcome, goodbye, already a member, not a member, or why a confirmation failed."""
    texts = {
        "subscribed": (f"Welcome to {spec.name}", (f"{to} is now a member of the {spec.label} list.\n"
                       f"You will get a notice whenever a CRDS context activation matches the list.\n"
                       f"To leave, send a blank message to {spec.address('leave')}.")),
        "unsubscribed": (f"You have left {spec.name}", f"{to} is no longer a member of the {spec.label} list."),
        "already-member": (f"Already a member of {spec.name}", f"{to} is already a member of the {spec.label} list."),
        "not-member": (f"Not a member of {spec.name}", f"{to} is not a member of the {spec.label} list."),
    }
    subject, body = texts.get(outcome, (f"Request to {spec.name} not done", f"Your request was not done: {outcome}."))
    return _message(spec, to=to, subject=subject, body=body + "\n" + _footer(spec), date=date,
                    message_id=message_id, in_reply_to=in_reply_to, loop_id=loop_id)


def help_message(
    spec: ListSpec, lists: Sequence[ListSpec], *, to: str, date: datetime, message_id: str, loop_id: str,
    unknown: str | None = None, in_reply_to: str | None = None,
) -> EmailMessage:
    """The commands and the lists at this domain; `unknown` is the command we could not read."""
    lines = [f"Could not understand: {unknown!r}", ""] if unknown else []
    lines += [
        f"Commands for {spec.address('request')} (in the Subject or the first lines of the body):",
        "  subscribe (or join)               join this list",
        "  unsubscribe (or leave, signoff)   leave this list",
        "  confirm TOKEN                     confirm a request",
        "  help                              this message",
        "",
        "Or send a blank message to one of:",
        f"  {spec.address('join')}    (also {spec.name}-subscribe@ and {spec.name}-subscribe-request@)",
        f"  {spec.address('leave')}   (also {spec.name}-unsubscribe@ and {spec.name}-unsubscribe-request@)",
        "",
        f"Lists at {spec.domain}:",
    ]
    lines += [f"  {s.label}" for s in lists]
    return _message(spec, to=to, subject=f"Help for {spec.name}", body="\n".join(lines) + "\n", date=date,
                    message_id=message_id, in_reply_to=in_reply_to, loop_id=loop_id)


def warning_message(
    spec: ListSpec, *, to: str, number: int, of: int, date: datetime, message_id: str, loop_id: str,
) -> EmailMessage:
    """Delivery is disabled because mail to `to` bounced; rejoin to re-enable."""
    body = (f"Mail from the {spec.label} list to {to} has been bouncing, so delivery to you is\n"
            f"disabled. This is warning {number} of {of}; after the last one you will be removed.\n\n"
            f"To re-enable delivery, send a blank message to {spec.address('join')} and confirm.\n")
    return _message(spec, to=to, subject=f"Delivery from {spec.name} disabled (warning {number} of {of})",
                    body=body + _footer(spec), date=date, message_id=message_id, loop_id=loop_id,
                    auto="auto-generated")


def admin_message(
    spec: ListSpec, *, to: Sequence[str], subject: str, body: str, date: datetime, message_id: str,
    loop_id: str, attachment: bytes | None = None,
) -> EmailMessage:
    """A note to the operators (disable, removal, unrecognised bounce, with the bounce attached)."""
    msg = _message(spec, to=", ".join(to), subject=f"[{spec.name}] {subject}", body=body, date=date,
                   message_id=message_id, loop_id=loop_id, auto="auto-generated")
    if attachment is not None:
        # As bytes, not message/rfc822: the bounce may be malformed, and it must reach them as it came.
        msg.add_attachment(attachment, maintype="application", subtype="octet-stream", filename="bounce.eml")
    return msg
