"""The e-mail channel as the drain sees it: one mailbox per row, sent over a cycle's SMTP sessions.

`EmailChannel` (channels/email.py) owns the SMTP side: settings, the client, sessions and error
mapping. `MailWiring` is the process-wide e-mail state the registry's `MailChannel` uses: that
transport, the pool of sessions of one drain cycle, and the renderings kept per notice shape (a
fan-out renders a notice once, off the event loop, and personalises it per recipient).
`MailWiring.send_many` sends a drain's batch of notices (`Outgoing`: a subscriber's, or a list
member's with the list's headers and VERP sender) side by side; a single send is a batch of one.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import datetime
from email.message import EmailMessage
from email.utils import parseaddr
from typing import Any, ClassVar

from crdswatch.channels.base import ChannelLimits, Item, Wiring
from crdswatch.channels.email import EmailChannel
from crdswatch.channels.smtp_pipeline import DEPTH, DataBody, SmtpPool
from crdswatch.errors import PermanentDeliveryError
from crdswatch.model import BridgeNotice, Notice, SubscriberConfig
from crdswatch.render.bridge import bridge_email
from crdswatch.render.budget import EMAIL_BUDGET, Budget
from crdswatch.render.email import EmailTemplate, email_message, email_template
from crdswatch.render.email_headers import apply_headers, message_id

__all__ = ["Mail", "MailChannel", "MailWiring", "Outgoing", "message_id_domain"]

_TEMPLATES = 64  # renderings kept: one per notice shape of the activations being sent


def message_id_domain(sender: str, configured: str | None = None) -> str:
    """The right-hand side of our Message-IDs: `smtp.message_id_domain`, else the sender's domain.

    A Message-ID on a domain we do not send from (or on `.invalid`) scores as spam and breaks
    threading in some clients; the sender's domain is the one the mail is signed for.
    """
    if configured:
        return configured
    domain = parseaddr(sender)[1].rpartition("@")[2].strip().lower()
    return domain or "localhost"


@dataclass(frozen=True)
class Mail:
    """A rendered e-mail that is not a notice (an upstream post): the stdlib message."""

    to: str
    envelope_from: str | None
    message: Callable[[], EmailMessage]


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One message of a batch (`MailWiring.send_many`): the notice as the outbox made it, without
    the links (they are per recipient), and what differs per recipient."""

    to: str
    notice: Notice
    key: str  # the row's idempotency key: the Message-ID
    unsubscribe_url: str | None
    manage_url: str | None
    # A list member's mail: the list's List-Id and headers (they replace the notice's), and the
    # VERP envelope sender its bounces come back to.
    list_id: str | None = None
    list_headers: Mapping[str, str] | None = None
    envelope_from: str | None = None

    def linked(self, public_url: str | None) -> Notice:
        """The notice as a single send renders it: with the public URL and this recipient's links."""
        return replace(self.notice, public_url=public_url, unsubscribe_url=self.unsubscribe_url,
                       manage_url=self.manage_url)


class MailWiring:
    """The e-mail side of one process: the transport, one drain cycle's sessions, the renderings."""

    def __init__(self, transport: EmailChannel, sender: str, domain: str | None = None) -> None:
        self.transport = transport
        self.sender = sender
        self.domain = message_id_domain(sender, domain)
        self.envelope_from = parseaddr(sender)[1]
        self.pool: SmtpPool | None = None
        self._templates: OrderedDict[int, tuple[Any, Any, EmailTemplate]] = OrderedDict()
        self._rendering: dict[int, asyncio.Future[None]] = {}  # renderings under way (warm)

    @asynccontextmanager
    async def cycle(self) -> AsyncIterator[None]:
        """SMTP connections for one drain cycle: up to `max_connections`, each carrying many messages,
        several at once where the server offers PIPELINING (channels.smtp_pipeline).

        Sessions connect lazily, on their first message, so a cycle without e-mail opens none.
        """
        self.pool = SmtpPool(self.transport, self.transport.settings.max_connections)
        try:
            yield
        finally:
            pool, self.pool = self.pool, None
            await pool.close()

    async def transmit(self, msg: EmailMessage, envelope_from: str | None = None) -> None:
        """Send a stdlib message over the cycle's sessions (outside a cycle: a connection of its own)."""
        if self.pool is None:  # outside a drain cycle (send-test): a connection of its own
            await self.transport.send(msg, sender=envelope_from)
            return
        await self.pool.send(msg, sender=envelope_from)

    async def send_many(self, batch: Sequence[tuple[int, Outgoing]], public_url: str | None, now: datetime,
                        done: Callable[[int, Exception | None], None]) -> None:
        """Send a batch over the cycle's sessions, each outcome (None or the exception) reported
        as `done(i, outcome)` as soon as it is known. The messages share one rendering per notice shape, made once
        off the loop (`warm`, by the first message of that shape, while the others go out); each
        fills in only its envelope headers, reason line and links, and they go out side by side
        on the pipelined sessions. What cannot go 8-bit goes as the stdlib message, base64."""
        await asyncio.gather(*(self._send_one(i, out, public_url, now, done) for i, out in batch))

    async def _send_one(self, i: int, out: Outgoing, public_url: str | None, now: datetime,
                        done: Callable[[int, Exception | None], None]) -> None:
        try:
            template = self.rendering(out.notice, *_links(out), public_url)
            if template is None:  # the first of its shape: rendered now, while the batch's others go out
                await self.warm(out.linked(public_url), *_links(out))
                template = self.rendering(out.notice, *_links(out), public_url)
            session = self.pool.pick() if self.pool is not None else None
            mid, n = message_id(out.key, self.domain), out.notice
            list_id = out.list_id or f"crdswatch-{n.subscriber}.{self.domain}"
            envelope_from = out.envelope_from or self.envelope_from
            if (template is None or session is None or not template.eightbit or not out.to.isascii()
                    or not envelope_from.isascii() or not await session.eightbit()):
                # An address that needs SMTPUTF8, a line too long for 8 bits, a server without
                # 8BITMIME: the stdlib message, its bodies base64 (7-bit safe, and far cheaper to
                # encode than quoted-printable).
                msg = email_message(out.linked(public_url), sender=self.sender, to=[out.to], message_id=mid,
                                    date=now, list_id=list_id, unsubscribe_url=out.unsubscribe_url,
                                    cte="base64" if session is not None else None, budget=EMAIL_BUDGET)
                await self.transmit(apply_headers(msg, out.list_headers or {}), out.envelope_from)
            else:
                body, size = template.render_data(
                    reason=n.reason, to=[out.to], message_id=mid, date=now, list_id=list_id,
                    unsubscribe_url=out.unsubscribe_url, manage_url=out.manage_url, extra_headers=out.list_headers)
                await session.send_raw(envelope_from, [out.to], DataBody(body, size))
        except Exception as exc:  # noqa: BLE001 - the outcome: the drain maps it
            done(i, exc)
        else:
            done(i, None)

    async def send_one(self, out: Outgoing, public_url: str | None, now: datetime) -> None:
        """One message the way `send_many` sends it; raises its failure."""
        outcome: list[Exception | None] = [None]
        await self.send_many([(0, out)], public_url, now, lambda i, result: outcome.__setitem__(0, result))
        if outcome[0] is not None:
            raise outcome[0]

    async def warm(self, notice: Notice, with_unsubscribe: bool, with_manage: bool) -> None:
        """Make the rendering `template` will return, in a worker thread: a notice's one full
        render (tens of milliseconds for a large one) must not hold the event loop. Concurrent
        sends of the same shape wait for the one rendering under way."""
        key, shape = _shape(notice, with_unsubscribe, with_manage, notice.public_url)
        while self._cached(key, shape, notice) is None:
            under_way = self._rendering.get(key)
            if under_way is not None:
                await asyncio.shield(under_way)  # one waiter cancelled (send_deadline) leaves the rest
                continue
            done = self._rendering[key] = asyncio.get_running_loop().create_future()
            try:
                template = await asyncio.to_thread(self._render, notice, with_unsubscribe, with_manage)
                self._keep(key, notice, shape, template)
            finally:
                del self._rendering[key]
                done.set_result(None)
            return

    def _render(self, notice: Notice, with_unsubscribe: bool, with_manage: bool) -> EmailTemplate:
        return email_template(notice, sender=self.sender, with_unsubscribe=with_unsubscribe,
                              budget=EMAIL_BUDGET, with_manage=with_manage)

    def rendering(self, notice: Notice, with_unsubscribe: bool, with_manage: bool,
                  public_url: str | None) -> EmailTemplate | None:
        """The rendering kept for this notice's shape (`warm` makes it), or None. One rendering
        per shape: the drain hands rows with the same selection the same `activations` tuple,
        kept alive here so its id cannot be reused while cached."""
        return self._cached(*_shape(notice, with_unsubscribe, with_manage, public_url), notice)

    def _cached(self, key: int, shape: tuple[Any, ...], notice: Notice) -> EmailTemplate | None:
        cached = self._templates.get(key)
        if cached is not None and cached[0] is notice.activations and cached[1] == shape:
            self._templates.move_to_end(key)
            return cached[2]
        return None

    def _keep(self, key: int, notice: Notice, shape: tuple[Any, ...], template: EmailTemplate) -> EmailTemplate:
        self._templates[key] = (notice.activations, shape, template)
        while len(self._templates) > _TEMPLATES:
            self._templates.popitem(last=False)
        return template


def _shape(notice: Notice, with_unsubscribe: bool, with_manage: bool, public_url: str | None
           ) -> tuple[int, tuple[Any, ...]]:
    """(cache key, shape) of a notice's rendering: everything it depends on but the reason line
    and the links, which it stands in for; the activations by identity (see `template`)."""
    hits = tuple(sorted(notice.dataset_hits.items())) if notice.dataset_hits else ()
    shape = (notice.digest, notice.interest, hits, public_url, notice.test, with_unsubscribe, with_manage)
    return hash((id(notice.activations), shape)), shape


def _links(out: Outgoing) -> tuple[bool, bool]:
    return out.unsubscribe_url is not None, out.manage_url is not None


class MailChannel:
    """The registry's e-mail channel: one row goes to one mailbox (`email:<address>`)."""

    kind: ClassVar[str] = "email"
    budget: ClassVar[Budget] = EMAIL_BUDGET

    def __init__(self, wiring: MailWiring, to: str) -> None:
        self.wiring, self.to = wiring, to

    @classmethod
    def limits(cls, wiring: Wiring) -> ChannelLimits:
        # DEPTH sends per connection keep a pipelined session busy while replies travel back
        # (without PIPELINING they take turns on it).
        connections = wiring.mail.transport.settings.max_connections if wiring.mail is not None else 1
        return ChannelLimits(max_concurrency=DEPTH * connections)

    @classmethod
    def open(cls, target: str, config: SubscriberConfig, wiring: Wiring) -> MailChannel:
        if wiring.mail is None:
            raise PermanentDeliveryError("no [smtp] configured for e-mail delivery")
        if not target:
            raise PermanentDeliveryError("email: no address")
        return cls(wiring.mail, target)

    def render(self, item: Item, key: str, now: datetime) -> Mail | Outgoing:
        w, to = self.wiring, self.to
        if isinstance(item, BridgeNotice):
            msg = bridge_email(item, sender=w.sender, to=[to], message_id=message_id(key, w.domain), date=now,
                               list_id=f"crdswatch-{item.subscriber}.{w.domain}")
            return Mail(to, None, lambda: msg)
        return Outgoing(to, item, key, item.unsubscribe_url, item.manage_url)

    async def send(self, rendered: Mail | Outgoing, key: str, now: datetime) -> None:
        if isinstance(rendered, Mail):
            await self.wiring.transmit(rendered.message(), rendered.envelope_from)
            return
        # A notice goes the way a drain's batch of them does: one owner of the e-mail choices.
        await self.wiring.send_one(rendered, rendered.notice.public_url, now)
