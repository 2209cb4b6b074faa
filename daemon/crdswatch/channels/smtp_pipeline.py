"""SMTP PIPELINING (RFC 2920) over aiosmtplib connections, for fan-out: one round trip per message.

aiosmtplib waits for every reply before the next command: four round trips per message (MAIL,
RCPT, DATA, the body), each an event-loop wake-up and a system call. A server that advertises
PIPELINING takes MAIL FROM, the RCPT TOs and DATA in one write, and the next message's commands
right behind the previous body, so a connection carrying several messages at once costs one
write and one reply read per message. The replies drive the transactions (`_on_reply`): on a
354 the body and the next queued message's commands go out together, so a send waits once, for
its final reply, not for its turn and for its 354 as well.

aiosmtplib still does everything but the transactions: connecting, STARTTLS or implicit TLS,
EHLO, AUTH, and its reply parser and error types. Its protocol object pairs one reply with one
awaited command and drops replies that arrive while nobody waits, so a pipelined connection gets
`_PipelineProtocol` (a subclass that queues every parsed reply) through the public
`transport.set_protocol`. A server without PIPELINING gets aiosmtplib's own `sendmail`, one
message at a time per connection, as before.

Outcomes are aiosmtplib's exceptions mapped by `channels.smtp_errors.map_smtp_error`, exactly as on the
one-command-at-a-time path: a refused sender, all recipients refused, a refused DATA or body each
raise the same typed error; recipients refused one by one are reported in `SendResult.refused`.
"""

from __future__ import annotations

import asyncio
import re
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from enum import Enum
from typing import TYPE_CHECKING, Any

import aiosmtplib
from aiosmtplib.email import extract_recipients, extract_sender, flatten_message, quote_address
from aiosmtplib.protocol import MAX_LINE_LENGTH, SMTPProtocol, normalize_message_line_endings
from aiosmtplib.response import SMTPResponse

from crdswatch.channels.base import ChannelPausedError
from crdswatch.channels.smtp_errors import SendResult, map_smtp_error
from crdswatch.errors import PermanentDeliveryError

if TYPE_CHECKING:
    from crdswatch.channels.email import EmailChannel

__all__ = ["DEPTH", "DataBody", "PipelinedSession", "SmtpPool"]

# Messages in flight per connection: they wait in the session's queue and go out behind each
# other's bodies as the replies come back (the server sees one transaction at a time). Deep
# queues let one write and one read carry several messages' commands and replies: a fan-out of
# 10,000 cost ~440 us of CPU a message at 4, ~330 at 16 (bench/fanout.py).
DEPTH = 16

# An address made only of these goes on the command line as it is; anything else goes through
# aiosmtplib's parser and checks (75 µs an address: a fan-out would spend more there than on SMTP).
_PLAIN_ADDRESS = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9.-]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_OK = (250, 251)


class _Step(Enum):
    ENVELOPE = 1  # MAIL FROM, each RCPT TO and DATA: 2 + len(recipients) replies, one queue entry
    BODY = 4
    RSET = 5


# Replies already cut, by their line: a pipelined fan-out reads the same few lines ("250 2.1.0
# Ok", "354 ...") for every message, so most replies cost one dict look-up, not a parse and two
# objects. Replies are immutable; the bound keeps unique ones (queue ids) from piling up.
_REPLY_CACHE: dict[bytes, SMTPResponse] = {}
_REPLY_CACHE_SIZE = 256
# MAIL FROM lines already built and checked, per session and server (see `_envelope`).
_MAIL_CACHE_SIZE = 64


@dataclass(frozen=True)
class DataBody:
    """A message as DATA carries it: CRLF line ends throughout and at the end, dot-stuffed (RFC
    5321 4.5.2); `size` is its length before stuffing (SIZE=). Sent as it is, never rescanned:
    `EmailTemplate.render_data` stuffs a fan-out's shared body once, not once per recipient."""

    stuffed: bytes
    size: int

    def message(self) -> bytes:
        """The message itself (for aiosmtplib's own `sendmail`, which stuffs it again)."""
        data = self.stuffed.replace(b"\r\n..", b"\r\n.")
        return data[1:] if data.startswith(b"..") else data


class _Transaction:
    """One message's (or QUIT's) way through the connection; one per message, hence the slots."""

    __slots__ = ("body", "body_sent", "commands", "data", "done", "mail", "rcpt", "recipients", "sender")

    def __init__(self, sender: str, recipients: Sequence[str], commands: bytes, body: bytes,
                 done: asyncio.Future[SMTPResponse]) -> None:
        self.sender = sender
        self.recipients = recipients
        self.commands = commands  # MAIL FROM, RCPT TO..., DATA (or QUIT)
        self.body = body  # dot-stuffed, CRLF-terminated; sent on the 354
        self.mail: SMTPResponse | None = None
        self.rcpt: list[SMTPResponse] = []
        self.data: SMTPResponse | None = None
        self.body_sent = False
        self.done = done  # the reply to the body (or to QUIT); a refusal as its exception


class _PipelineProtocol(SMTPProtocol):
    """aiosmtplib's protocol, with every reply in arrival order handed to `on_reply`."""

    def __init__(self, transport: asyncio.Transport, owner: PipelinedSession) -> None:
        super().__init__(loop=asyncio.get_running_loop())
        self.transport = transport
        self._over_ssl = transport.get_extra_info("sslcontext") is not None
        self.owner = owner

    def data_received(self, data: bytes) -> None:
        owner = self.owner
        if owner._protocol is not self:  # a connection already given up (see _abort)
            return
        owner._replying = True
        try:
            handed = self._replies(data)
        except Exception as exc:  # noqa: BLE001 - a malformed or oversized reply ends the connection
            owner._abort(exc)
            return
        finally:
            owner._replying = False
        if handed:  # the watchdog's mark: one clock read per read, not per reply
            owner._progress = self._loop.time()
        if owner._flush_pending:  # what the replies put on the wire (a 354's body, next commands)
            owner._write_out()

    def _replies(self, data: bytes) -> bool:
        """Hand over every complete reply in `data` (behind what an earlier read left); keep the
        incomplete rest. Whether any reply was handed over.

        A pipelined fan-out reads four one-line replies per message: those are cut here, a
        `bytes.find` each, from the bytes as read (a buffer only for a reply split across reads);
        anything else (a multi-line reply, an oversized or malformed line) goes to aiosmtplib's
        own parser, with its errors.
        """
        buffer, owner, cache = self._buffer, self.owner, _REPLY_CACHE
        if buffer:
            buffer.extend(data)
            data = bytes(buffer)
            buffer.clear()
        offset, handed = 0, False
        while owner._protocol is self:
            end = data.find(b"\n", offset)
            if end < 0:
                break
            line = data[offset:end + 1]
            response = cache.get(line)
            if response is None:
                if line[3:4] == b"-" or len(line) > MAX_LINE_LENGTH or not line[:3].isdigit():
                    buffer.extend(data[offset:] if offset else data)
                    if (response := self._read_response_from_buffer()) is None:
                        return handed
                    data, offset = bytes(buffer), 0
                    buffer.clear()
                    handed = True
                    owner._on_reply(response)
                    continue
                response = SMTPResponse(int(line[:3]), line[4:].strip(b" \t\r\n").decode("utf-8", "surrogateescape"))
                if len(cache) >= _REPLY_CACHE_SIZE:
                    cache.clear()
                cache[line] = response
            offset = end + 1
            handed = True
            owner._on_reply(response)
        if offset < len(data):
            buffer.extend(data[offset:] if offset else data)
        return handed

    def eof_received(self) -> bool:
        if self.owner._protocol is self:
            self.owner._abort(aiosmtplib.SMTPServerDisconnected("Unexpected EOF received"))
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if self.owner._protocol is self:
            lost = aiosmtplib.SMTPServerDisconnected("Connection lost")
            lost.__cause__ = exc
            self.owner._abort(lost)


def _quoted(address: str) -> str:
    return f"<{address}>" if _PLAIN_ADDRESS.fullmatch(address) else quote_address(address)


def _wire_body(data: bytes) -> tuple[int, bytes]:
    """`data` as DATA carries it, dot-stuffed, and its size with CRLF line ends (RFC 1870).

    Rendered notices already have CRLF line ends, so this is a few C-speed scans, not
    aiosmtplib's regular expressions over every 48 KB body.
    """
    crlf = data.count(b"\r\n")
    if data.count(b"\n") != crlf or data.count(b"\r") != crlf:
        data = normalize_message_line_endings(data)
    elif not data.endswith(b"\r\n"):
        data += b"\r\n"
    size = len(data)
    if data.startswith(b"."):
        data = b"." + data
    return size, data.replace(b"\r\n.", b"\r\n..")


class PipelinedSession:
    """One SMTP connection that takes many concurrent `send_raw`/`send` calls; reconnects lazily.

    With PIPELINING the calls' transactions overlap on the wire (each message's commands follow
    the previous body without waiting); without it they take turns through aiosmtplib.
    """

    def __init__(self, channel: EmailChannel) -> None:
        self._channel = channel
        self._smtp: aiosmtplib.SMTP | None = None
        self._protocol: _PipelineProtocol | None = None
        self._connect_lock = asyncio.Lock()
        self._turn = asyncio.Lock()  # one transaction at a time without PIPELINING
        self._queue: deque[_Transaction] = deque()  # pipelined, commands not on the wire yet
        self._open: _Transaction | None = None  # commands on the wire, its DATA reply not in yet
        self._expect: deque[tuple[_Step, _Transaction]] = deque()
        self._out: list[bytes] = []
        self._flush_scheduled = False
        # While the protocol hands replies over, writes wait for the end of the read, not for a
        # callback of their own: one write per read, one loop callback less per message.
        self._replying = False
        self._flush_pending = False
        self._watchdog: asyncio.TimerHandle | None = None
        self._progress = 0.0
        # (sender, options) -> the MAIL FROM line up to its SIZE= value, and its encoding; built
        # and checked once per sender for the server `_mail_for` (its extensions decide them)
        self._mail: dict[tuple[str, tuple[str, ...]], tuple[str, bool, str]] = {}
        self._mail_for: aiosmtplib.SMTP | None = None
        self.in_flight = 0
        self.connections = 0  # how many times this session had to (re)connect
        self.sent = 0
        self.pipelining = False

    # -- connection ---------------------------------------------------------------------------------

    async def _connection(self) -> aiosmtplib.SMTP:
        if self._smtp is not None and self._smtp.is_connected:
            return self._smtp
        async with self._connect_lock:
            if self._smtp is not None and self._smtp.is_connected:
                return self._smtp
            smtp = await self._channel.connect()  # the one handshake (TLS, EHLO, AUTH); typed errors
            self.pipelining = smtp.supports_extension("pipelining")
            if self.pipelining:
                transport = smtp.transport
                assert isinstance(transport, asyncio.Transport)
                self._protocol = _PipelineProtocol(transport, self)
                transport.set_protocol(self._protocol)
            self._smtp, self.connections = smtp, self.connections + 1
            return smtp

    async def eightbit(self) -> bool:
        """Whether this connection's server takes 8-bit bodies (8BITMIME); connects if need be."""
        return (await self._connection()).supports_extension("8bitmime")

    async def close(self) -> None:
        """QUIT politely once the messages in flight are answered; a server that hung up is fine."""
        smtp, protocol = self._smtp, self._protocol
        if smtp is None:
            return
        try:
            if protocol is None:
                if smtp.is_connected:
                    await smtp.quit()
            elif protocol.is_connected:
                quit_sent = _Transaction("", (), b"QUIT\r\n", b"",  # behind every queued message
                                         asyncio.get_running_loop().create_future())
                self._queue.append(quit_sent)
                self._pump()
                await asyncio.wait_for(quit_sent.done, self._channel.settings.timeout)
        except (aiosmtplib.SMTPException, OSError, TimeoutError):
            pass
        finally:
            if self._smtp is smtp:
                self._abort(aiosmtplib.SMTPServerDisconnected("session closed"))

    def _drop(self) -> None:
        self._abort(aiosmtplib.SMTPServerDisconnected("connection dropped"))

    # -- sending ------------------------------------------------------------------------------------

    async def send(
        self, msg: EmailMessage, *, recipients: Sequence[str] | None = None, sender: str | None = None
    ) -> SendResult:
        """Send one message (default recipients: its To/Cc/Bcc; Bcc is never transmitted)."""
        targets = list(recipients) if recipients is not None else extract_recipients(msg)
        if not targets:
            raise PermanentDeliveryError("smtp: message has no recipients")
        envelope_from = sender or extract_sender(msg)
        if not envelope_from:
            raise PermanentDeliveryError("smtp: message has no sender")
        smtp = await self._connection()
        utf8 = not (envelope_from.isascii() and all(t.isascii() for t in targets))
        eightbit = smtp.supports_extension("8bitmime")
        data = flatten_message(msg, utf8=utf8, cte_type="8bit" if eightbit else "7bit")
        options = (["BODY=8BITMIME"] if eightbit else []) + (["SMTPUTF8"] if utf8 else [])
        result = await self.send_raw(envelope_from, targets, data, mail_options=options)
        return SendResult(msg.get("Message-ID"), result.accepted, result.refused, result.reply)

    async def send_raw(
        self, sender: str, recipients: Sequence[str], data: bytes | DataBody, *,
        mail_options: Sequence[str] = ("BODY=8BITMIME",),
    ) -> SendResult:
        """Send an already-encoded message (or one already as DATA carries it); concurrent calls
        share the connection.

        The default `mail_options` are for a rendered 8-bit notice (`EmailTemplate.render`) on a
        server that offers 8BITMIME (see `eightbit`).
        """
        if not recipients:
            raise PermanentDeliveryError("smtp: message has no recipients")
        self.in_flight += 1
        try:
            smtp = self._smtp
            if smtp is None or not smtp.is_connected:  # a live connection costs no coroutine here
                smtp = await self._connection()
            if self._protocol is None:
                refused, reply = await self._send_plain(smtp, sender, recipients, data, mail_options)
            else:
                refused, reply = await self._send_pipelined(smtp, sender, recipients, data, mail_options)
        finally:
            self.in_flight -= 1
        self.sent += 1
        accepted = tuple(r for r in recipients if r not in refused) if refused else tuple(recipients)
        return SendResult(None, accepted, refused, reply)

    async def _send_plain(
        self, smtp: aiosmtplib.SMTP, sender: str, recipients: Sequence[str], data: bytes | DataBody,
        options: Sequence[str],
    ) -> tuple[dict[str, tuple[int, str]], str]:
        message = data.message() if isinstance(data, DataBody) else data
        async with self._turn:  # one transaction at a time on a server without PIPELINING
            try:
                refused, reply = await smtp.sendmail(sender, list(recipients), message, mail_options=list(options))
            except Exception as exc:
                error = map_smtp_error(exc)
                if not isinstance(exc, aiosmtplib.SMTPResponseException | aiosmtplib.SMTPRecipientsRefused):
                    self._drop()  # a timed-out or broken link is in an unknown state; start afresh
                raise error from exc
            except asyncio.CancelledError:  # cut off mid-transaction (send_deadline): likewise
                if self._smtp is smtp:
                    self._drop()
                raise
        return {address: (r.code, r.message) for address, r in refused.items()}, reply

    async def _send_pipelined(
        self, smtp: aiosmtplib.SMTP, sender: str, recipients: Sequence[str], data: bytes | DataBody,
        options: Sequence[str],
    ) -> tuple[dict[str, tuple[int, str]], str]:
        try:
            commands, body = self._envelope(smtp, sender, recipients, data, options)
        except (ValueError, aiosmtplib.SMTPException) as exc:
            raise map_smtp_error(exc) from exc
        protocol = self._protocol
        assert protocol is not None
        txn = _Transaction(sender, recipients, commands, body, protocol._loop.create_future())
        self._queue.append(txn)
        if self._open is None:  # else the DATA reply on the wire pumps it (_on_data_reply)
            self._pump()
        try:
            reply = await txn.done  # the replies move the transaction on (_on_reply): one wake-up per message
        except asyncio.CancelledError:
            if txn in self._queue:  # not on the wire yet: simply not sent
                self._queue.remove(txn)
            elif not txn.body_sent and self._protocol is protocol:
                # The server may be waiting for this body: whatever came next would be read as
                # part of it. Only a fresh connection is safe.
                self._abort(aiosmtplib.SMTPServerDisconnected("transaction cancelled"))
            raise
        except aiosmtplib.SMTPException as exc:  # a refusal, or a broken connection given up (_abort)
            raise map_smtp_error(exc) from exc
        if reply.code not in _OK:
            raise map_smtp_error(aiosmtplib.SMTPDataError(reply.code, reply.message))
        if len(txn.rcpt) == 1 and txn.rcpt[0].code in _OK:  # the fan-out's case
            return {}, reply.message
        refused = {r: (resp.code, resp.message) for r, resp in zip(recipients, txn.rcpt, strict=True)
                   if resp.code not in _OK}
        return refused, reply.message

    def _envelope(
        self, smtp: aiosmtplib.SMTP, sender: str, recipients: Sequence[str], data: bytes | DataBody,
        options: Sequence[str],
    ) -> tuple[bytes, bytes]:
        """The commands (MAIL FROM, RCPT TO..., DATA) and the body as they go on the wire.

        A sender seen before on this server, with plain recipients, takes the short cut: its MAIL
        FROM line was built and checked once (`_envelope_checked`), and a plain address has no
        control character and encodes alike in ASCII and UTF-8, so only SIZE= and the RCPT lines
        are new. Anything else is built and checked in full; the bytes are the same either way.
        """
        if self._mail_for is not smtp:
            self._mail, self._mail_for = {}, smtp
        key = (sender, options if isinstance(options, tuple) else tuple(options))
        mail = self._mail.get(key)
        plain = (_PLAIN_ADDRESS.fullmatch(recipients[0]) is not None if len(recipients) == 1
                 else all(_PLAIN_ADDRESS.fullmatch(r) for r in recipients))  # the fan-out's case: no generator
        if mail is None or not plain:
            commands, body = self._envelope_checked(smtp, sender, recipients, data, options)
            if mail is None:
                self._remember_mail(smtp, key)
            return commands, body
        prefix, sized, encoding = mail
        size, body = (data.size, data.stuffed) if isinstance(data, DataBody) else _wire_body(data)
        rcpt = (f"RCPT TO:<{recipients[0]}>\r\n" if len(recipients) == 1
                else "".join([f"RCPT TO:<{r}>\r\n" for r in recipients]))
        head = f"{prefix}{size}\r\n" if sized else f"{prefix}\r\n"
        return f"{head}{rcpt}DATA\r\n".encode(encoding), body

    def _remember_mail(self, smtp: aiosmtplib.SMTP, key: tuple[str, tuple[str, ...]]) -> None:
        """Keep the MAIL FROM line for (sender, options), once it went through the full checks."""
        sender, options = key
        sized = smtp.supports_extension("size")
        encoding = "utf-8" if any(o.upper() == "SMTPUTF8" for o in options) else "ascii"
        prefix = " ".join([f"MAIL FROM:{_quoted(sender)}", *options, *(["SIZE="] if sized else [])])
        if len(self._mail) >= _MAIL_CACHE_SIZE:
            self._mail.clear()
        self._mail[key] = (prefix, sized, encoding)

    def _envelope_checked(
        self, smtp: aiosmtplib.SMTP, sender: str, recipients: Sequence[str], data: bytes | DataBody,
        options: Sequence[str],
    ) -> tuple[bytes, bytes]:
        utf8 = any(o.upper() == "SMTPUTF8" for o in options)
        if utf8 and not smtp.supports_extension("smtputf8"):
            raise aiosmtplib.SMTPNotSupported("SMTPUTF8 is not supported by this server")
        encoding = "utf-8" if utf8 else "ascii"
        size, body = (data.size, data.stuffed) if isinstance(data, DataBody) else _wire_body(data)
        mail = [f"MAIL FROM:{_quoted(sender)}", *options]
        if smtp.supports_extension("size"):
            mail.append(f"SIZE={size}")
        lines = [" ".join(mail), *(f"RCPT TO:{_quoted(r)}" for r in recipients)]
        if any(_CONTROL.search(line) for line in lines):  # what aiosmtplib refuses too: no command injection
            raise ValueError("Command arg contains a prohibited control character")
        return ("\r\n".join(lines) + "\r\nDATA\r\n").encode(encoding), body

    @staticmethod
    def _refusal(txn: _Transaction) -> aiosmtplib.SMTPException:
        assert txn.mail is not None and txn.data is not None
        if txn.mail.code not in _OK:
            return aiosmtplib.SMTPSenderRefused(txn.mail.code, txn.mail.message, txn.sender)
        refused = [aiosmtplib.SMTPRecipientRefused(r.code, r.message, address)
                   for address, r in zip(txn.recipients, txn.rcpt, strict=True) if r.code not in _OK]
        if len(refused) == len(txn.recipients):
            return aiosmtplib.SMTPRecipientsRefused(refused)
        return aiosmtplib.SMTPDataError(txn.data.code, txn.data.message)

    # -- the wire -----------------------------------------------------------------------------------

    def _write(self, chunks: list[bytes], step: _Step, txn: _Transaction) -> None:
        """Queue bytes for the next flush and the reply (or replies: `_Step.ENVELOPE`) they will
        bring, in wire order."""
        protocol = self._protocol
        if protocol is None or not protocol.is_connected:
            raise aiosmtplib.SMTPServerDisconnected("Connection lost")
        if not self._expect:
            self._progress = protocol._loop.time()
            self._arm_watchdog()
        self._out.extend(chunks)
        self._expect.append((step, txn))

    def _pump(self) -> None:
        """Put the next queued transaction's commands on the wire, unless one still waits for its
        DATA reply: its body has to come first. On a 354 the body and the next commands go out
        in the same write (RFC 2920: nobody else's bytes inside a message)."""
        queue = self._queue
        while self._open is None and queue:
            txn = queue.popleft()
            try:
                if not txn.recipients:  # QUIT: one reply, no DATA
                    self._write([txn.commands], _Step.BODY, txn)
                else:
                    self._write([txn.commands], _Step.ENVELOPE, txn)
                    self._open = txn
            except aiosmtplib.SMTPException as exc:  # the connection is gone: nothing queued can go
                _fail(txn.done, exc)
                continue
            self._flush_soon()

    def _on_data_reply(self, txn: _Transaction, response: SMTPResponse) -> None:
        txn.data, self._open = response, None
        assert txn.mail is not None
        rcpt = txn.rcpt
        if response.code == 354 and txn.mail.code in _OK and (
                rcpt[0].code in _OK if len(rcpt) == 1 else any(r.code in _OK for r in rcpt)):
            self._write([txn.body, b".\r\n"], _Step.BODY, txn)
            txn.body_sent = True
        else:
            if response.code == 354:  # DATA taken with no one to send to (RFC 2920 3.1)
                self._write([b".\r\n"], _Step.RSET, txn)
            self._write([b"RSET\r\n"], _Step.RSET, txn)
            _fail(txn.done, self._refusal(txn))
        self._pump()
        self._flush_soon()

    def _flush_soon(self) -> None:
        if self._replying:
            self._flush_pending = True
        elif not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        self._write_out()

    def _write_out(self) -> None:
        self._flush_pending = False
        out, self._out = self._out, []
        if out and self._protocol is not None and self._protocol.is_connected:
            self._protocol.write(b"".join(out))  # one system call for everything queued since the last

    def _on_reply(self, response: SMTPResponse) -> None:
        """One reply, to the oldest command still unanswered (the protocol marks the progress)."""
        expect = self._expect
        if not expect:
            self._abort(aiosmtplib.SMTPResponseException(response.code, f"unexpected reply: {response.message}"))
            return
        step, txn = expect[0]
        if step is _Step.ENVELOPE:  # MAIL, then one per recipient, then DATA
            if txn.mail is None:
                txn.mail = response
            elif len(txn.rcpt) < len(txn.recipients):
                txn.rcpt.append(response)
            else:
                expect.popleft()
                self._on_data_reply(txn, response)
            return
        expect.popleft()
        if step is _Step.BODY and not txn.done.done():
            txn.done.set_result(response)

    def _arm_watchdog(self) -> None:
        if self._watchdog is None:
            self._watchdog = asyncio.get_running_loop().call_later(self._channel.settings.timeout, self._check_progress)

    def _check_progress(self) -> None:
        self._watchdog = None
        if not self._expect:
            return
        idle = asyncio.get_running_loop().time() - self._progress
        if idle >= self._channel.settings.timeout:
            self._abort(aiosmtplib.SMTPReadTimeoutError("Timed out waiting for server response"))
        else:
            self._watchdog = asyncio.get_running_loop().call_later(self._channel.settings.timeout - idle,
                                                                   self._check_progress)

    def _abort(self, exc: BaseException) -> None:
        """Give the connection up: every message in flight fails with `exc`; the next send reconnects."""
        waiting, self._expect = self._expect, deque()
        queued, self._queue, self._open = self._queue, deque(), None
        self._out, self._flush_pending = [], False
        smtp, self._smtp, self._protocol = self._smtp, None, None
        for txn in [t for _, t in waiting] + list(queued):
            _fail(txn.done, exc)
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        if smtp is not None:
            smtp.close()


def _fail(future: asyncio.Future[SMTPResponse], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)
        future.exception()  # retrieved: a transaction that never awaited it is not an error


class SmtpPool:
    """Up to `connections` pipelined sessions; each message goes to the least busy one."""

    def __init__(self, channel: EmailChannel, connections: int) -> None:
        self.sessions = [PipelinedSession(channel) for _ in range(max(1, connections))]
        self._next = 0

    def pick(self) -> PipelinedSession:
        """The session the next message goes to: round robin among the least busy, so every
        connection gets used and none gets far ahead."""
        sessions, start = self.sessions, self._next
        count = len(sessions)
        chosen, least = start, sessions[start].in_flight
        for index in range(start + 1, start + count):  # one pass, in rotation order from _next
            busy = sessions[index % count].in_flight
            if busy < least:  # strictly: the first of the least busy wins
                chosen, least = index % count, busy
        self._next = (chosen + 1) % count
        return sessions[chosen]

    async def eightbit(self) -> bool:
        return await self.pick().eightbit()

    async def send_raw(self, sender: str, recipients: Sequence[str], data: bytes | DataBody, **kwargs: Any
                       ) -> SendResult:
        return await self.pick().send_raw(sender, recipients, data, **kwargs)

    async def send(self, msg: EmailMessage, **kwargs: Any) -> SendResult:
        return await self.pick().send(msg, **kwargs)

    async def close(self) -> None:
        for session in self.sessions:
            try:
                await session.close()
            except ChannelPausedError:  # pragma: no cover - close never connects
                pass
