"""SMTP e-mail channel on aiosmtplib: explicit transport security, reused sessions, typed errors.

`EmailChannel.connect` is the one SMTP handshake; `channels.smtp_pipeline.PipelinedSession` is
the one session (a connection carrying many messages) built on it.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import TYPE_CHECKING, ClassVar, Literal

import aiosmtplib
from pydantic import SecretStr

from crdswatch.channels.smtp_errors import SendResult, map_smtp_error
from crdswatch.render.budget import EMAIL_BUDGET, Budget

if TYPE_CHECKING:
    from crdswatch import config
    from crdswatch.channels.smtp_pipeline import PipelinedSession

__all__ = ["EmailChannel", "Security", "SmtpSettings"]

log = logging.getLogger(__name__)

Security = Literal["starttls", "tls", "none"]
_DEFAULT_PORTS: dict[Security, int] = {"starttls": 587, "tls": 465, "none": 25}


@dataclass(frozen=True)
class SmtpSettings:
    """How to reach the submission server; `port` defaults from `security` (587/465/25).

    The runtime value the channel connects with. The configuration's one owner is
    `config.SmtpSettings` ([smtp]); `from_config` is the one place this is built from it, for the
    daemon and for `check-config` alike, so what the check connects with is what the daemon will.
    """

    host: str
    port: int | None = None
    security: Security = "starttls"
    username: str | None = None
    password: SecretStr | str | None = field(default=None, repr=False)
    timeout: float = 30.0
    ca_file: str | None = None  # extra trust anchor, e.g. a private CA or a test CA
    verify: bool = True  # False only for tests against throwaway certificates
    max_connections: int = 4  # parallel sessions for fan-out; submission servers limit these
    local_hostname: str | None = None

    @classmethod
    def from_config(cls, smtp: config.SmtpSettings) -> SmtpSettings:
        return cls(host=smtp.host, port=smtp.port, security=smtp.security, username=smtp.username,
                   password=smtp.password, timeout=smtp.timeout, ca_file=str(smtp.ca_file) if smtp.ca_file else None,
                   verify=smtp.verify, max_connections=smtp.max_connections)

    def password_value(self) -> str | None:
        if isinstance(self.password, SecretStr):
            return self.password.get_secret_value()
        return self.password


class EmailChannel:
    """Sends rendered `EmailMessage`s through one submission server."""

    kind: ClassVar[str] = "email"
    budget: ClassVar[Budget] = EMAIL_BUDGET  # how much one notice may take here (render.budget)

    def __init__(self, settings: SmtpSettings) -> None:
        self.settings = settings
        self._tls_context = self._make_tls_context() if settings.security != "none" else None
        if settings.security == "none":
            log.warning("smtp security is 'none': mail to %s goes in plaintext", settings.host)

    def __repr__(self) -> str:
        return f"EmailChannel(host={self.settings.host!r}, security={self.settings.security!r})"

    def _make_tls_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=self.settings.ca_file)
        if not self.settings.verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    def new_client(self) -> aiosmtplib.SMTP:
        """An unconnected aiosmtplib client; security is explicit, never opportunistic."""
        s = self.settings
        return aiosmtplib.SMTP(
            hostname=s.host,
            port=s.port if s.port is not None else _DEFAULT_PORTS[s.security],
            username=s.username,
            password=s.password_value() if s.username is not None else None,
            timeout=s.timeout,
            use_tls=s.security == "tls",
            # False, not None: None would mean "upgrade if offered", and silently plaintext if not.
            start_tls=s.security == "starttls",
            tls_context=self._tls_context,
            local_hostname=s.local_hostname,
        )

    async def connect(self) -> aiosmtplib.SMTP:
        """A connected, secured and logged-in client: the one SMTP handshake of the process.

        TCP connect, implicit TLS or STARTTLS (as configured, never opportunistic), EHLO (HELO
        for a server that refuses it) and AUTH. Every session (channels.smtp_pipeline) and
        `check-config` connect through here, so the check cannot pass where the daemon fails.
        Failures are typed as for a connection (`map_smtp_error(connecting=True)`); a half-open
        client is closed, also when the caller's deadline cancels the handshake.
        """
        smtp = self.new_client()
        try:
            await smtp.connect()
            if smtp.is_ehlo_or_helo_needed:
                try:
                    await smtp.ehlo()
                except aiosmtplib.SMTPHeloError:
                    await smtp.helo()
        except Exception as exc:
            smtp.close()
            raise map_smtp_error(exc, connecting=True) from exc
        except asyncio.CancelledError:  # the send's deadline ran out mid-handshake: no half-open link
            smtp.close()
            raise
        return smtp

    @asynccontextmanager
    async def session(self) -> AsyncIterator[PipelinedSession]:
        """`async with channel.session() as s: await s.send(msg)`: one connection, many messages
        (pipelined where the server offers PIPELINING); the drain's pool holds sessions of the
        same class, so alerts, list replies and notices share one connection owner."""
        from crdswatch.channels.smtp_pipeline import PipelinedSession

        session = PipelinedSession(self)
        try:
            yield session
        finally:
            await session.close()

    async def send(
        self, msg: EmailMessage, *, recipients: Sequence[str] | None = None, sender: str | None = None
    ) -> SendResult:
        """Send a single message on its own connection."""
        async with self.session() as session:
            return await session.send(msg, recipients=recipients, sender=sender)
