"""The lists' inbound mail listener: aiosmtpd LMTP (for an MTA transport) or SMTP, in the daemon's loop.

Bounded: RCPT for anything but a list address is refused (550) before any data is read; DATA is
capped at `max_message_bytes` (552); each connection has an overall deadline (421), however
slowly the peer talks, and at most `MAX_CONNECTIONS` are open at once. Parsing and the store
work run in a thread, so a large or hostile message never stalls the event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from datetime import datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any

import structlog
from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import SMTP, Envelope, Session

from crdswatch.app.list_bounces import handle_bounce
from crdswatch.app.lists import ListService, Outgoing
from crdswatch.notices.list_addresses import Recipient, parse_recipient

__all__ = ["MAX_CONNECTIONS", "InboundHandler", "InboundServer", "deliver"]

log = structlog.get_logger("crdswatch.inbound")
MAX_CONNECTIONS = 50
IDLE_TIMEOUT = 30.0  # seconds between two commands; the overall deadline is session_timeout

Deliver = Callable[[Sequence[Outgoing]], Coroutine[Any, Any, None]]
# Other owners of addresses at the lists' domain (the bridge's upstream addresses): return a
# callable that takes (mail_from, raw bytes) when it owns `address`, else None.
Extra = Callable[[str], Callable[[str, bytes], Awaitable[None]] | None]


async def deliver(channel: Any, outgoing: Sequence[Outgoing], deadline: float | None = None) -> None:
    """Send list mails through the e-mail channel, each within `deadline` seconds ([limits]
    send_deadline); a failure is logged, never raised to the peer."""
    for item in outgoing:
        try:
            async with asyncio.timeout(deadline):
                await channel.send(item.message, recipients=list(item.recipients), sender=item.envelope_from)
        except Exception as exc:  # noqa: BLE001 - the request is logged already; the reply is lost
            why = str(exc) or (f"no complete send within send_deadline ({deadline:g} s)"
                               if isinstance(exc, TimeoutError) and deadline is not None else type(exc).__name__)
            log.error("list reply not sent", to=item.recipients, subject=str(item.message["Subject"]), error=why)


def _malformed(message: EmailMessage, raw: bytes) -> str | None:
    if not raw.strip():
        return "empty message"
    if not list(message.keys()):
        return "no header section"
    if any(type(d).__name__ == "MissingHeaderBodySeparatorDefect" for d in message.defects) and not message["From"]:
        return "no header section"
    return None


class InboundHandler:
    """aiosmtpd handler: recipients checked at RCPT, each message handed to the list service."""

    def __init__(self, service: ListService, send: Deliver, clock: Callable[[], datetime],
                 extra: Extra | None = None) -> None:
        self.service = service
        self.send = send
        self.clock = clock
        self.extra = extra
        self.tasks: set[asyncio.Task[None]] = set()  # replies being sent
        self.received = 0
        self.count: Callable[[str], None] = lambda outcome: None  # the daemon points this at a metric
        self.tripped: Callable[[str], None] = lambda reason: None  # ... and this at the bound-trip metric
        # Bound trips (oversize, cut by the session deadline or the connection cap, rate limits):
        # how many of each, and the last one, for /healthz?format=json and /api/status.
        self.trips: dict[str, int] = {}
        self.last_trip: dict[str, str] | None = None

    def trip(self, reason: str, detail: str) -> None:
        """One bound tripped (the peer was refused or cut, or a rate limit held a reply back)."""
        self.trips[reason] = self.trips.get(reason, 0) + 1
        self.last_trip = {"reason": reason, "detail": detail[:300], "at": self.clock().isoformat()}
        self.tripped(reason)

    def bounds(self) -> dict[str, Any]:
        return {"trips": dict(sorted(self.trips.items())), "last_trip": self.last_trip}

    def _recipient(self, address: str) -> Recipient | None:
        return parse_recipient(address, self.service.policy.domain, self.service.specs)

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        rcpt = self._recipient(address)
        if rcpt is None and self.extra is not None and self.extra(address) is not None:
            envelope.rcpt_tos.append(address)
            return "250 2.1.5 OK"
        if rcpt is None:
            self.count("refused_rcpt")
            log.info("inbound refused", rcpt=address[:200], reason="no such list address")
            return f"550 5.1.1 <{address[:200]}>: no such list address"
        if rcpt.role == "post":
            self.count("refused_rcpt")
            return f"550 5.7.1 <{address[:200]}>: this list takes no posts; see {rcpt.list_name}-request"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        mail_from = str(envelope.mail_from or "")
        self.received += 1
        try:
            message = await asyncio.to_thread(BytesParser(policy=policy.default).parsebytes, raw)
        except Exception as exc:  # noqa: BLE001 - unparseable: refused, never a crash
            self.count("malformed")
            log.info("inbound refused", reason=f"unparseable: {exc}")
            return "550 5.6.0 malformed message"
        assert isinstance(message, EmailMessage)
        why = _malformed(message, raw)
        if why is not None:
            self.count("malformed")
            log.info("inbound refused", mail_from=mail_from[:200], reason=why)
            return f"550 5.6.0 malformed message: {why}"
        replies: list[str] = []
        outgoing: list[Outgoing] = []
        for address in envelope.rcpt_tos:
            try:
                outgoing += await self._one(address, mail_from, message, raw)
                replies.append("250 2.0.0 OK")
                self.count("accepted")
            except Exception as exc:  # the MTA keeps the message and retries it
                self.count("failed")
                log.exception("inbound handling failed", rcpt=address, error=str(exc))
                replies.append("451 4.3.0 temporary failure, try again later")
        if outgoing:
            task = asyncio.get_running_loop().create_task(self.send(outgoing))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        if isinstance(server, LMTP):
            return "\r\n".join(replies)  # LMTP: one reply per accepted recipient (RFC 2033)
        failed = [r for r in replies if not r.startswith("250")]
        return failed[0] if failed else "250 2.0.0 OK"

    async def _one(self, address: str, mail_from: str, message: EmailMessage, raw: bytes) -> list[Outgoing]:
        rcpt = self._recipient(address)
        if rcpt is None:
            owner = self.extra(address) if self.extra is not None else None
            if owner is not None:
                await owner(mail_from, raw)
            return []
        now = self.clock()
        if rcpt.role == "bounces":
            return await asyncio.to_thread(handle_bounce, self.service, rcpt, message, raw, now)
        return await asyncio.to_thread(self.service.handle_mail, rcpt, mail_from, message, now)


class InboundServer:
    """The listening socket; `protocol` is "lmtp" or "smtp"."""

    def __init__(self, handler: InboundHandler, host: str, port: int, *, protocol: str = "lmtp",
                 max_message_bytes: int = 1_048_576, session_timeout: float = 60.0) -> None:
        self.handler = handler
        self.host, self.port = host, port
        self.protocol = protocol
        self.max_message_bytes = max_message_bytes
        self.session_timeout = session_timeout
        self.server: asyncio.Server | None = None
        self.open_connections = 0

    def _factory(self) -> SMTP:
        loop = asyncio.get_running_loop()
        base = LMTP if self.protocol == "lmtp" else SMTP
        outer = self

        class Bounded(base):  # type: ignore[misc, valid-type]
            def connection_made(self, transport: Any) -> None:
                outer.open_connections += 1
                self._over_limit = outer.open_connections > MAX_CONNECTIONS
                super().connection_made(transport)
                self._deadline = loop.call_later(
                    0 if self._over_limit else outer.session_timeout, self._time_up)

            def _time_up(self) -> None:
                if self.transport is not None and not self.transport.is_closing():
                    why = "too many connections" if self._over_limit else "session time limit reached"
                    log.info("inbound connection closed", reason=why)
                    outer.handler.count("cut_connections" if self._over_limit else "cut_deadline")
                    outer.handler.trip("connections" if self._over_limit else "session_timeout",
                                       f"{why} ({MAX_CONNECTIONS} connections)" if self._over_limit
                                       else f"{why} ({outer.session_timeout:g} s)")
                    self.transport.write(f"421 4.4.2 {why}, closing\r\n".encode())
                    self.transport.close()

            async def push(self, status: Any) -> None:
                # aiosmtpd answers an oversized message itself (at MAIL FROM SIZE=, or after DATA)
                text = status.decode("ascii", "replace") if isinstance(status, bytes) else str(status)
                if text.startswith("552"):
                    log.info("inbound refused", reason="message too large", limit=outer.max_message_bytes)
                    outer.handler.count("oversize")
                    outer.handler.trip("oversize", f"message larger than max_message_bytes "
                                                   f"({outer.max_message_bytes} bytes): 552")
                elif text.startswith("500 Line too long"):
                    outer.handler.count("malformed")
                    outer.handler.trip("line_length", "a line longer than RFC 5321 allows: 500")
                await super().push(status)

            def connection_lost(self, error: Exception | None) -> None:
                outer.open_connections -= 1
                self._deadline.cancel()
                super().connection_lost(error)

        return Bounded(self.handler, data_size_limit=self.max_message_bytes, enable_SMTPUTF8=True,
                       decode_data=False, hostname=self.handler.service.policy.domain, timeout=IDLE_TIMEOUT,
                       ident="crdswatch lists", loop=loop)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(self._factory, self.host, self.port)
        self.port = self.server.sockets[0].getsockname()[1]
        log.info("inbound listening", protocol=self.protocol, host=self.host, port=self.port,
                 domain=self.handler.service.policy.domain)

    async def stop(self, grace: float = 10.0) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None
        if self.handler.tasks:
            await asyncio.wait(self.handler.tasks, timeout=grace)
