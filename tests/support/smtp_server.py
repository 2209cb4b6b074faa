"""A real SMTP peer on loopback (aiosmtpd): STARTTLS or implicit TLS, AUTH, fault injection."""

from __future__ import annotations

import asyncio
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Literal, cast

import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from crdswatch.channels.email import Security, SmtpSettings

__all__ = [
    "DROP", "PipeliningHandler", "Pki", "ReceivedMessage", "RecordingHandler", "SmtpTestServer", "make_pki",
    "running_smtp_server",
]

Command = Literal["MAIL", "RCPT", "DATA"]
DROP = "DROP"  # a scripted fault that hangs up instead of answering


@dataclass(frozen=True)
class Pki:
    """A throwaway CA, the server context it signed, and the CA file clients should trust."""

    ca: trustme.CA
    server_context: ssl.SSLContext
    ca_file: Path


def make_pki(directory: Path) -> Pki:
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    ca_file = directory / "smtp-test-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    return Pki(ca, context, ca_file)


@dataclass(frozen=True)
class ReceivedMessage:
    """What one DATA delivered; `session` numbers the SMTP connection that carried it (from 1)."""

    session: int
    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes
    login: str | None

    def parsed(self) -> EmailMessage:
        return message_from_bytes(self.data, policy=policy.default)


@dataclass
class RecordingHandler:
    """aiosmtpd handler: records messages, numbers sessions, injects scripted faults."""

    messages: list[ReceivedMessage] = field(default_factory=list)
    faults: dict[str, list[str]] = field(default_factory=lambda: {"MAIL": [], "RCPT": [], "DATA": []})
    rejected_addresses: dict[str, str] = field(default_factory=dict)
    _sessions: list[Session] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def session_number(self, session: Session) -> int:
        # Keep the Session objects alive so identity comparison never sees a recycled id().
        with self._lock:
            for number, known in enumerate(self._sessions, start=1):
                if known is session:
                    return number
            self._sessions.append(session)
            return len(self._sessions)

    def _take_fault(self, command: str) -> str | None:
        with self._lock:
            queue = self.faults[command]
            return queue.pop(0) if queue else None

    def _fault(self, server: SMTP, command: str, address: str | None = None) -> str | None:
        fault = self._take_fault(command) or (self.rejected_addresses.get(address) if address else None)
        if fault == DROP:
            assert server.transport is not None
            server.transport.close()
            return "421 4.3.2 Closing"
        return fault

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        fault = self._fault(server, "MAIL")
        if fault is not None:
            return fault
        envelope.mail_from, envelope.mail_options = address, list(options)
        return "250 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        fault = self._fault(server, "RCPT", address)
        if fault is not None:
            return fault
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        fault = self._fault(server, "DATA")
        if fault is not None:
            return fault
        login = session.auth_data.login.decode() if isinstance(session.auth_data, LoginPassword) else None
        content = envelope.original_content or b""
        received = ReceivedMessage(
            self.session_number(session), str(envelope.mail_from), tuple(envelope.rcpt_tos), content, login
        )
        with self._lock:
            self.messages.append(received)
        return "250 Message accepted"


@dataclass
class PipeliningHandler(RecordingHandler):
    """Also advertises PIPELINING (RFC 2920): aiosmtpd reads commands in order from its stream, so
    it takes pipelined commands as they come; it just does not say so by itself."""

    async def handle_EHLO(
        self, server: SMTP, session: Session, envelope: Envelope, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname
        return [*responses[:-1], "250-PIPELINING", responses[-1]]


def _reply(code: int | str) -> str:
    if isinstance(code, str):
        return code
    texts = {421: "4.3.2 Service shutting down", 451: "4.3.0 Try again later", 550: "5.1.1 No such user"}
    return f"{code} {texts.get(code, 'Scripted failure')}"


class _PortZeroController(Controller):
    """Controller bound to an ephemeral port; aiosmtpd would otherwise need a fixed one."""

    def _trigger_server(self) -> None:
        assert self.server is not None
        self.port = cast(asyncio.Server, self.server).sockets[0].getsockname()[1]
        super()._trigger_server()  # type: ignore[no-untyped-call]


class SmtpTestServer:
    """An SMTP server in its own thread; `security` picks STARTTLS, implicit TLS or plaintext."""

    def __init__(
        self,
        pki: Pki,
        *,
        security: Security = "starttls",
        username: str = "crdswatch",
        password: str = "correct horse",
        pipelining: bool = False,
    ) -> None:
        self.pki = pki
        self.security: Security = security
        self.username = username
        self.password = password
        self.handler = PipeliningHandler() if pipelining else RecordingHandler()
        self.host = "127.0.0.1"
        self._controller = _PortZeroController(self.handler, **self._controller_kwargs())

    def _controller_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"hostname": self.host, "port": 0, "authenticator": self._authenticate}
        if self.security == "starttls":
            kwargs.update(tls_context=self.pki.server_context, require_starttls=True, auth_require_tls=True)
        elif self.security == "tls":
            # aiosmtpd only counts STARTTLS as TLS for auth_require_tls; here the socket is TLS.
            kwargs.update(ssl_context=self.pki.server_context, auth_require_tls=False)
        else:
            kwargs.update(auth_require_tls=False)
        return kwargs

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login.decode() == self.username
            and auth_data.password.decode() == self.password
        )
        # success=False with handled=False makes aiosmtpd answer "535 5.7.8 ... invalid".
        return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)

    @property
    def port(self) -> int:
        return int(self._controller.port)

    @property
    def messages(self) -> list[ReceivedMessage]:
        return list(self.handler.messages)

    @property
    def sessions_used(self) -> set[int]:
        return {m.session for m in self.handler.messages}

    def fail_next(self, command: Command, reply: int | str, count: int = 1) -> None:
        """The next `count` MAIL, RCPT or DATA commands get `reply`, e.g. 451 or 550, or DROP."""
        with self.handler._lock:
            self.handler.faults[command].extend([_reply(reply)] * count)

    def reject_address(self, address: str, reply: int | str = 550) -> None:
        """Every RCPT for `address` gets `reply`, to test per-recipient refusals."""
        self.handler.rejected_addresses[address] = _reply(reply)

    def settings(self, **overrides: Any) -> SmtpSettings:
        """Client settings that reach this server and trust its CA; override any field."""
        values: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "security": self.security,
            "username": self.username,
            "password": self.password,
            "ca_file": str(self.pki.ca_file),
            "timeout": 5.0,
        }
        values.update(overrides)
        return SmtpSettings(**values)

    def start(self) -> SmtpTestServer:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()


@contextmanager
def running_smtp_server(pki: Pki, **kwargs: Any) -> Iterator[SmtpTestServer]:
    server = SmtpTestServer(pki, **kwargs).start()
    try:
        yield server
    finally:
        server.stop()
