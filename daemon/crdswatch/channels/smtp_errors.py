"""SMTP outcomes: what one accepted message came back with, and aiosmtplib's errors typed.

Shared by the one handshake (channels.email.EmailChannel.connect) and the one session
(channels.smtp_pipeline.PipelinedSession); its own module so neither imports the other.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from dataclasses import dataclass

import aiosmtplib

from crdswatch.errors import (
    ChannelPausedError,
    DeliveryConnectionError,
    DeliveryError,
    DeliveryTimeoutError,
    PermanentDeliveryError,
    TransientDeliveryError,
)

__all__ = ["SendResult", "map_smtp_error"]


@dataclass(frozen=True)
class SendResult:
    """One accepted message; `refused` lists recipients the server turned down individually."""

    message_id: str | None
    accepted: tuple[str, ...]
    refused: Mapping[str, tuple[int, str]]
    reply: str

    @property
    def transient_refused(self) -> tuple[str, ...]:
        """Recipients worth retrying (4xx): pass them back as `recipients=` to send again."""
        return tuple(r for r, (code, _) in self.refused.items() if 400 <= code < 500)

    @property
    def permanent_refused(self) -> tuple[str, ...]:
        return tuple(r for r, (code, _) in self.refused.items() if not 400 <= code < 500)


def _is_cert_problem(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _refused_error(exc: aiosmtplib.SMTPRecipientsRefused) -> DeliveryError:
    detail = "; ".join(f"{r.recipient}: {r.code} {r.message}" for r in exc.recipients)
    transient = [r.code for r in exc.recipients if 400 <= r.code < 500]
    if transient:
        return TransientDeliveryError(f"smtp: all recipients refused: {detail}", code=transient[0])
    return PermanentDeliveryError(f"smtp: all recipients refused: {detail}",
                                  code=exc.recipients[0].code if exc.recipients else None)


def _response_error(exc: aiosmtplib.SMTPResponseException, connecting: bool) -> DeliveryError:
    text, code = f"smtp: {exc.code} {exc.message}", exc.code
    if isinstance(exc, aiosmtplib.SMTPAuthenticationError) and exc.code >= 500:
        return ChannelPausedError(f"{text} (authentication failed; fix credentials)", code=code)
    if 400 <= exc.code < 500 or exc.code < 400:
        return TransientDeliveryError(text, code=code)
    # A 5xx before any message was offered (greeting, EHLO, STARTTLS) is the server refusing us,
    # not this message; dead-lettering the item would be wrong.
    return ChannelPausedError(text, code=code) if connecting else PermanentDeliveryError(text, code=code)


def map_smtp_error(exc: Exception, *, connecting: bool = False) -> DeliveryError:
    """Classify an aiosmtplib/transport exception; `connecting` means no message was offered yet."""
    if isinstance(exc, DeliveryError):
        return exc
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        return _refused_error(exc)
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return _response_error(exc, connecting)
    if _is_cert_problem(exc):
        return ChannelPausedError(f"smtp: server certificate not trusted: {exc}")
    if isinstance(exc, (aiosmtplib.SMTPTimeoutError, TimeoutError)):
        return DeliveryTimeoutError(f"smtp: timed out: {exc!r}")
    if isinstance(exc, (aiosmtplib.SMTPServerDisconnected, OSError)):
        return DeliveryConnectionError(f"smtp: connection problem: {exc!r}")
    if isinstance(exc, aiosmtplib.SMTPException):
        # e.g. STARTTLS or AUTH not offered: a configuration mismatch when connecting,
        # otherwise something about this message (SMTPUTF8 address on a server without it).
        text = f"smtp: {exc}"
        return ChannelPausedError(text) if connecting else PermanentDeliveryError(text)
    if isinstance(exc, ValueError):
        return PermanentDeliveryError(f"smtp: message cannot be sent: {exc}")
    raise exc
