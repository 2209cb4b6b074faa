"""Notice e-mail: multipart/alternative (text, then HTML) with list and anti-auto-reply headers (pure).

`email_message` builds one message with the stdlib. A fan-out to thousands sends the same notice
to everyone who chose the same filters, so `email_template` renders it once, with stand-ins for
the few things that differ per recipient (the reason line, the unsubscribe link, the envelope
headers), and `EmailTemplate.render` fills them in: a few bytes.replace calls instead of a
template render and a quoted-printable encoding (17.6 ms) per message.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from email.generator import BytesGenerator
from email.message import EmailMessage
from functools import cached_property, lru_cache
from typing import Any

from markupsafe import escape

from crdswatch.model import Notice
from crdswatch.notices.summary import summarise
from crdswatch.render.budget import EMAIL_BUDGET, Budget, Detail, fit
from crdswatch.render.common import WIDTH, clean_text
from crdswatch.render.email_headers import NOTICE_POLICY, apply_headers, build_headers, sanitise_header
from crdswatch.render.html import render_html
from crdswatch.render.layout import wrap
from crdswatch.render.text import render_text
from crdswatch.render.view import notice_view

__all__ = ["EmailTemplate", "email_message", "email_template", "warm_templates"]

# Stand-ins: plain ASCII without spaces that no renderer escapes, wraps or cleans, and no server
# text contains.
_REASON_TEXT, _REASON_HTML = "@@crdswatch-reason-text@@", "@@crdswatch-reason-html@@"
_URL_TEXT = "https://unsubscribe.invalid/@@crdswatch-url-text@@"
_URL_HTML = "https://unsubscribe.invalid/@@crdswatch-url-html@@"
_MANAGE_TEXT = "https://manage.invalid/@@crdswatch-manage-text@@"
_MANAGE_HTML = "https://manage.invalid/@@crdswatch-manage-html@@"
# The text body wraps these footer lines (notice.txt.j2); a personalised copy wraps them the same way.
_WHY, _UNSUBSCRIBE, _MANAGE = "Why you got this: ", "Unsubscribe: ", "Change what you get or leave: "
_FOLD = 78  # the notice policy's max_line_length: where headers fold
_MAX_LINE = 998  # RFC 5321: longest line an 8-bit body may carry, CRLF excluded
_SLACK = 2_000  # bytes of the budget kept for what personalisation adds (reason, link, headers)
_WIRE = NOTICE_POLICY.clone(linesep="\r\n")


def warm_templates() -> None:
    """Compile the notice templates now: jinja compiles each at its first use, and the first
    notice a process renders paid for all four (52 ms of CPU for the replay's first notice).
    For a daemon to call at startup, off its first drain."""
    from crdswatch.render import html, text

    for compiled in (text._template, text._section_template, html._template, html._section_template):
        compiled()


def email_message(
    notice: Notice,
    *,
    sender: str,
    to: list[str],
    message_id: str,
    date: datetime,
    list_id: str,
    unsubscribe_url: str | None = None,
    unsubscribe_mailto: str | None = None,
    budget: Budget = EMAIL_BUDGET,
    cte: str | None = None,
) -> EmailMessage:
    """`date` is passed in (no clock here); `unsubscribe_url` defaults to the notice's own link.

    The whole message (headers, text and HTML parts as encoded) stays within `budget`: a longer
    notice keeps its overview and the first rows of each section, and says where the rest is.
    `cte` forces the transfer encoding of both bodies ("base64"); None lets the stdlib choose.
    """
    summaries = [summarise(d) for d in notice.activations]

    def build(detail: Detail) -> EmailMessage:
        return _message(notice, detail, summaries, sender=sender, to=to, message_id=message_id, date=date,
                        list_id=list_id, unsubscribe_url=unsubscribe_url, unsubscribe_mailto=unsubscribe_mailto,
                        cte=cte)

    return fit(build, lambda msg: (len(msg.as_bytes()), 1), budget, len(notice.activations))


def _message(notice: Notice, detail: Detail, summaries: list[Any], *, sender: str, to: list[str], message_id: str,
             date: datetime, list_id: str, unsubscribe_url: str | None, unsubscribe_mailto: str | None,
             cte: str | None = None) -> EmailMessage:
    view = notice_view(notice, detail, summaries)
    msg = EmailMessage(policy=NOTICE_POLICY)
    msg.set_content(render_text(view), charset="utf-8", cte=cte)
    # Clients show the last alternative they understand, so HTML goes second.
    msg.add_alternative(render_html(view), subtype="html", charset="utf-8", cte=cte)
    observatories = "/".join(dict.fromkeys(d.observatory.upper() for d in notice.activations)) or "CRDS"
    headers = build_headers(
        message_id=message_id,
        date=date,
        list_id=list_id,
        list_name=f"CRDS {observatories} context activations",
        unsubscribe_url=unsubscribe_url or notice.unsubscribe_url,
        unsubscribe_mailto=unsubscribe_mailto,
        subject=view.subject,
        sender=sender,
        to=to,
    )
    return apply_headers(msg, headers)


@dataclass(frozen=True)
class EmailTemplate:
    """One notice rendered once as an 8-bit MIME body; `render` personalises a copy per recipient.

    `eightbit` is False when a body line is too long for 8-bit transport: then only
    `email_message` (which may choose base64) can send it.
    """

    notice: Notice
    subject: str
    list_name: str
    static_headers: bytes  # MIME-Version, Content-Type with its boundary, Subject, From
    body: bytes
    with_unsubscribe: bool
    eightbit: bool
    with_manage: bool = False

    def render(
        self, *, reason: str, to: list[str], message_id: str, date: datetime, list_id: str,
        unsubscribe_url: str | None, manage_url: str | None = None, extra_headers: Mapping[str, str] | None = None,
    ) -> bytes:
        """The whole message as bytes with CRLF line ends, ready for SMTP with BODY=8BITMIME."""
        head, values = self._personal(reason=reason, to=to, message_id=message_id, date=date, list_id=list_id,
                                      unsubscribe_url=unsubscribe_url, manage_url=manage_url,
                                      extra_headers=extra_headers)
        literals, names = self._pieces
        out = [self.static_headers, head, b"\r\n", literals[0]]
        for name, literal in zip(names, literals[1:]):
            out += (values[name], literal)
        return b"".join(out)

    def render_data(
        self, *, reason: str, to: list[str], message_id: str, date: datetime, list_id: str,
        unsubscribe_url: str | None, manage_url: str | None = None, extra_headers: Mapping[str, str] | None = None,
    ) -> tuple[bytes, int]:
        """`render`'s message as an SMTP DATA body carries it, and its length before that (SIZE=).

        RFC 5321 4.5.2 transparency: a line that starts with "." gets one more. The template's
        own pieces are stuffed once (`_stuffed`); per message only the personalised bytes are
        scanned, instead of the whole 20-50 KB message three or four times.
        """
        head, values = self._personal(reason=reason, to=to, message_id=message_id, date=date, list_id=list_id,
                                      unsubscribe_url=unsubscribe_url, manage_url=manage_url,
                                      extra_headers=extra_headers)
        names, (static, stuffed) = self._pieces[1], self._stuffed
        filled = [values[name] for name in names]
        size = len(self.static_headers) + len(head) + 2 + self._literal_bytes + sum(map(len, filled))
        if not self._dotted and not any(v.startswith(b".") or b"\n." in v for v in filled):
            # The common case: no line of the shared pieces or of the values starts with a dot.
            out = [static, _stuff(head), b"\r\n", stuffed[0]]
            for value, literal in zip(filled, stuffed[1:]):
                out += (value, literal)
            return b"".join(out), size
        out = [static, _stuff(head), b"\r\n"]
        line_start = True  # the last piece ended a line (every piece is CRLF-only: see _personal)
        for i, literal in enumerate(stuffed):
            if i:
                line_start = _append_stuffed(out, _stuff(filled[i - 1]), line_start)
            line_start = _append_stuffed(out, literal, line_start)
        return b"".join(out), size

    def _personal(
        self, *, reason: str, to: list[str], message_id: str, date: datetime, list_id: str,
        unsubscribe_url: str | None, manage_url: str | None, extra_headers: Mapping[str, str] | None = None,
    ) -> tuple[bytes, dict[str, bytes]]:
        """The recipient's header block and the values of the stand-ins (no CR or LF but the CRLF
        line ends of the wrapped footers: every value is cleaned or sanitised). `extra_headers`
        (a list's) replace the notice's of the same name and follow the rest, as `apply_headers`
        on the stdlib message does."""
        for link, present, what in ((unsubscribe_url, self.with_unsubscribe, "an unsubscribe link"),
                                    (manage_url, self.with_manage, "a manage link")):
            if (link is not None) != present:
                raise ValueError(f"this template was rendered {'with' if present else 'without'} {what}")
        reason_text = " ".join(clean_text(reason).split())
        headers = build_headers(message_id=message_id, date=date, list_id=list_id, list_name=self.list_name,
                                unsubscribe_url=unsubscribe_url, to=to)
        for name, value in (extra_headers or {}).items():
            headers.pop(name, None)
            headers[sanitise_header(name)] = sanitise_header(value)
        head = b"".join(_header_bytes(name, value) for name, value in headers.items())
        values = {"why": _footer(_WHY, reason_text), "reason": str(escape(reason_text)).encode()}
        if unsubscribe_url is not None:
            url_text = clean_text(unsubscribe_url)
            values["url"], values["url_html"] = _footer(_UNSUBSCRIBE, url_text), str(escape(url_text)).encode()
        if manage_url is not None:
            manage_text = clean_text(manage_url)
            values["manage"], values["manage_html"] = _footer(_MANAGE, manage_text), str(escape(manage_text)).encode()
        return head, values

    @cached_property
    def _stuffed(self) -> tuple[bytes, list[bytes]]:
        """The static headers and the body's literal pieces, each with its inner line starts
        dot-stuffed (a piece's first byte depends on what precedes it: `_append_stuffed`)."""
        if self.static_headers.startswith(b"."):  # pragma: no cover - a header line starts with its name
            raise ValueError("a header block cannot start with a dot")
        return _stuff(self.static_headers), [_stuff(p) for p in self._pieces[0]]

    @cached_property
    def _dotted(self) -> bool:
        """A literal piece starts with a dot (the first one starts a line; any other does if the
        value before it ends one)."""
        return any(p.startswith(b".") for p in self._pieces[0])

    @cached_property
    def _literal_bytes(self) -> int:
        return sum(len(p) for p in self._pieces[0])

    @cached_property
    def _pieces(self) -> tuple[list[bytes], list[str]]:
        """The body cut at its stand-ins, once per template: the literal pieces, and the names of
        what goes between them (a fan-out then copies the 20-50 KB body once per recipient instead
        of once per stand-in, and never rescans what it has filled in)."""
        return _split_stand_ins(self.body)


def email_template(notice: Notice, *, sender: str, with_unsubscribe: bool, with_manage: bool = False,
                   budget: Budget = EMAIL_BUDGET) -> EmailTemplate:
    """Render `notice` (its subscriber, reason and links are ignored) once, for many recipients."""
    stand_in = dataclasses.replace(notice, subscriber="", reason=_REASON_TEXT,
                                   unsubscribe_url=_URL_TEXT if with_unsubscribe else None,
                                   manage_url=_MANAGE_TEXT if with_manage else None)
    summaries = [summarise(d) for d in notice.activations]
    built: list[tuple[Any, bytes, bytes]] = []  # the last rendering only

    def build(detail: Detail) -> tuple[Any, bytes, bytes]:
        view = notice_view(stand_in, detail, summaries)
        if built and built[-1][0] == view:
            # A level that leaves out nothing more (no table longer than its rows, as often the
            # first ones): the same view renders the same bytes, which did not fit.
            return built[-1]
        html_view = view.with_links(_REASON_HTML, _URL_HTML if with_unsubscribe else None,
                                    _MANAGE_HTML if with_manage else None)
        head, body = _alternative_8bit(render_text(view), render_html(html_view), view.subject, sender)
        built[:] = [(view, head, body)]
        return built[-1]

    room = Budget(budget.channel, budget.max_bytes - _SLACK if budget.max_bytes else None, budget.max_messages)
    view, head, body = fit(build, lambda built: (len(built[1]) + len(built[2]), 1), room, len(notice.activations))
    observatories = "/".join(dict.fromkeys(d.observatory.upper() for d in notice.activations)) or "CRDS"
    eightbit = _lines_within(body, _MAX_LINE)
    return EmailTemplate(notice, view.subject, f"CRDS {observatories} context activations", head, body,
                         with_unsubscribe, eightbit, with_manage)


def _alternative_8bit(text: str, html: str, subject: str, sender: str) -> tuple[bytes, bytes]:
    """The header block (CRLF-terminated lines, no blank line) and the body of the multipart/alternative
    message the stdlib makes of `text` and `html` with set_content/add_alternative(cte="8bit") and
    as_bytes(policy=_WIRE), byte for byte (tests/test_render.py compares the two), without its
    header registry and generator: they were most of the time of a rendered notice.
    """
    text_part, html_part = _crlf_lines(text), _crlf_lines(html)
    # The generator draws the boundary against the parts joined by CRLF; each starts and ends a
    # line, so its lines are theirs (and an empty one): they are searched as they are, uncopied.
    boundary = _make_boundary(_TEXT_PART, text_part, _HTML_PART, html_part)
    delimiter = b"--" + boundary.encode("ascii")
    # One copy of the 20-50 KB parts into the body (concatenating the pieces made three).
    body = b"".join((delimiter, b"\r\n", _TEXT_PART, text_part, b"\r\n", delimiter, b"\r\n", _HTML_PART, html_part,
                     b"\r\n", delimiter, b"--\r\n"))
    head = b"".join((b"MIME-Version: 1.0\r\n", _content_type(boundary), _subject_header(subject),
                     _sender_header(sender)))
    return head, body


def _make_boundary(*texts: bytes) -> str:
    """BytesGenerator._make_boundary(text): the generator's own choice, from the same random draw,
    a boundary no line of `text` is. The stdlib compiles a new pattern and scans the whole body
    for every message (a millisecond per notice); a body without the bare string cannot match
    it, so the pattern is tried only when the string occurs. Several `texts` are searched as
    their concatenation when each ends a line (the boundary has no line break to span two)."""
    boundary = str(BytesGenerator._make_boundary())  # type: ignore[attr-defined]  # the draw, unchecked
    candidate, counter = boundary, 0
    while _boundary_line(candidate, texts):
        candidate, counter = f"{boundary}.{counter}", counter + 1
    return candidate


def _boundary_line(candidate: str, texts: tuple[bytes, ...]) -> bool:
    bare = b"--" + candidate.encode("ascii")
    return any(bare in text and re.search(("^--" + re.escape(candidate) + "(--)?$").encode("ascii"), text, re.MULTILINE)
               for text in texts)


def _lines_within(data: bytes, limit: int) -> bool:
    """`max(map(len, data.split(b"\\r\\n"))) <= limit` for CRLF-only `data`, without a list of
    every line (the split took 4% of a rendering): a line longer than `limit` holds a whole
    window of limit // 2 bytes without a line feed starting at a multiple of that, so only such
    windows' lines are measured."""
    step = max(1, limit // 2)
    q, end = 0, len(data)
    while q < end:
        if data.find(b"\n", q, q + step) != -1:
            q += step
            continue
        start = data.rfind(b"\n", 0, q) + 1
        stop = data.find(b"\n", q)
        if stop == -1:
            stop = end
        elif stop > start and data[stop - 1] == 13:  # the CR of the line's CRLF
            stop -= 1
        if stop - start > limit:
            return False
        q = (stop // step + 1) * step  # the next window past this line
    return True


def _crlf_lines(text: str) -> bytes:
    # set_content(cte="8bit") keeps text.encode().splitlines() joined by LF, LF-terminated; the
    # generator writes each LF as CRLF. Without a CR that is each LF made CRLF, and one more at
    # the end if the text has none (one pass instead of a list of every line).
    data = text.encode("utf-8")
    if b"\r" in data:
        return b"\r\n".join(data.splitlines()) + b"\r\n"
    return data.replace(b"\n", b"\r\n") + (b"" if data.endswith(b"\n") else b"\r\n")


def _stored_header(name: str, value: str) -> bytes:
    """`msg[name] = value`, then as the generator writes it with the wire policy."""
    return _WIRE.fold_binary(*NOTICE_POLICY.header_store_parse(name, value))


def _subject_header(subject: str) -> bytes:
    """`_stored_header("Subject", subject)`, written directly for the subjects notices have: ASCII
    words between single spaces, none of them an encoded word or too long for a line. The stdlib's
    header registry and folder took a fifth of a rendered notice; these it folds greedily at the
    spaces, each break taking the space to the next line (tests/test_render.py compares the two)."""
    words = subject.split(" ")
    if not (subject.isascii() and subject.isprintable() and "=?" not in subject and all(words)
            and max(map(len, words)) <= _FOLD - 2):
        return _stored_header("Subject", subject)
    if len("Subject: ") + len(subject) <= _FOLD:
        return f"Subject: {subject}\r\n".encode("ascii")
    if len(subject) + 1 <= _FOLD:  # fits on a line of its own: the whole value goes there
        return f"Subject:\r\n {subject}\r\n".encode("ascii")
    lines = ["Subject: " + words[0]] if len("Subject: ") + len(words[0]) <= _FOLD else ["Subject:", " " + words[0]]
    for word in words[1:]:
        if len(lines[-1]) + 1 + len(word) <= _FOLD:
            lines[-1] += " " + word
        else:  # the space before the word starts the next line
            lines.append(" " + word)
    return ("\r\n".join(lines) + "\r\n").encode("ascii")


@lru_cache(maxsize=16)  # one sender per deployment: parsed once, not once per notice
def _sender_header(sender: str) -> bytes:
    return _stored_header("From", sender)


def _content_type(boundary: str) -> bytes:
    # The generator's boundaries are '=' and digits ('.N' after a clash): the stdlib folds the
    # header before `boundary=` whatever they are, as long as the continuation line fits.
    if len(boundary) <= 60 and _BOUNDARY_RE.fullmatch(boundary):
        return b'Content-Type: multipart/alternative;\r\n boundary="' + boundary.encode("ascii") + b'"\r\n'
    return _stored_header("Content-Type", f'multipart/alternative; boundary="{boundary}"')


_BOUNDARY_RE = re.compile(r"=+[0-9]+=+(?:\.[0-9]+)?")


_TEXT_PART = b'Content-Type: text/plain; charset="utf-8"\r\nContent-Transfer-Encoding: 8bit\r\n\r\n'
# add_alternative gives the second part a MIME-Version of its own.
_HTML_PART = b'Content-Type: text/html; charset="utf-8"\r\nContent-Transfer-Encoding: 8bit\r\nMIME-Version: 1.0\r\n\r\n'


def _stuff(piece: bytes) -> bytes:
    """A piece of a CRLF message with every line start inside it dot-stuffed (not its first byte)."""
    return piece.replace(b"\r\n.", b"\r\n..")


def _append_stuffed(out: list[bytes], piece: bytes, line_start: bool) -> bool:
    """Append a `_stuff`ed piece, with one more dot if a line starts with it; whether it ends a line."""
    if not piece:
        return line_start
    if line_start and piece.startswith(b"."):
        out.append(b".")
    out.append(piece)
    return piece.endswith(b"\n")


def _footer(label: str, value: str) -> bytes:
    """`label + value` wrapped as the text body wraps it (notice.txt.j2), CRLF-joined.

    A fan-out wraps three footers per recipient. A link is one word that cannot break (no
    space, `|` or `,`): greedy wrapping then lays the label out as it would alone and puts the
    link after its last line if it fits there, else on a line of its own, indented (tests
    compare this with `wrap` itself)."""
    words = value.split()
    if len(words) == 1 and words[0] == value and not _BREAKABLE.search(value):
        *head, last = _label_lines(label)
        lines = [*head, f"{last} {value}"] if len(last) + 1 + len(value) <= WIDTH else [*head, last, "  " + value]
        return "\r\n".join(lines).encode()
    return "\r\n".join(wrap(label + value, "", "  ")).encode()


_BREAKABLE = re.compile("[|,\ue000]")  # where `wrap` may break a word (render.layout), or glues one


@lru_cache(maxsize=16)
def _label_lines(label: str) -> tuple[str, ...]:
    return tuple(wrap(label, "", "  "))


# What EmailTemplate.render fills in, as the rendered body carries it -> the name of its value.
_STAND_INS = {
    _footer(_WHY, _REASON_TEXT): "why", _REASON_HTML.encode(): "reason",
    _footer(_UNSUBSCRIBE, _URL_TEXT): "url", _URL_HTML.encode(): "url_html",
    _footer(_MANAGE, _MANAGE_TEXT): "manage", _MANAGE_HTML.encode(): "manage_html",
}
# Every stand-in holds this once (and it cannot overlap itself): with bytes.find for it, the
# body is scanned in C at memchr speed; a regular expression of the six stand-ins tried every
# position of the 20-50 KB body in turn (80 us a notice, on the event loop).
_MARK = b"@@crdswatch-"
_STAND_IN_AT = tuple((key, key.index(_MARK), name) for key, name in _STAND_INS.items())


def _split_stand_ins(body: bytes) -> tuple[list[bytes], list[str]]:
    """`body` cut at its stand-ins: the literal pieces (one more than the stand-ins), and the
    name of each stand-in between two of them; what `re.split` with the stand-ins as
    alternatives gives (tests/test_render.py compares the two). A stand-in holds its marker
    once, and no stand-in's text follows another's marker, so the one whose text surrounds a
    marker is the match there, and matches never overlap."""
    literals: list[bytes] = []
    names: list[str] = []
    start = 0  # where the last stand-in ended
    at = body.find(_MARK)
    while at != -1:
        for key, offset, name in _STAND_IN_AT:
            begin = at - offset
            if begin >= start and body.startswith(key, begin):
                literals.append(body[start:begin])
                names.append(name)
                start = begin + len(key)
                break
        at = body.find(_MARK, at + 1)
    literals.append(body[start:])
    return literals, names


def _header_bytes(name: str, value: str) -> bytes:
    # build_headers has already removed every control character. Plain ASCII that fits on an SMTP
    # line goes out as it is (List-* URIs must not be folded anyway); anything else is encoded and
    # folded by the stdlib with the notice policy.
    if value.isascii() and len(name) + len(value) + 2 <= _MAX_LINE:
        return f"{name}: {value}\r\n".encode("ascii")
    return _WIRE.fold_binary(name, value)

