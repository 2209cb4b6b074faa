"""E-mail channel against a real aiosmtpd peer: TLS modes, AUTH, headers, error mapping, reuse."""

# Fixtures are imported by name and then requested as parameters, which pyflakes calls
# redefinition (F811); listing the module in conftest's pytest_plugins would make this unneeded.
# ruff: noqa: F811

from __future__ import annotations

import asyncio
import logging
import socket
from datetime import UTC, datetime
from email.message import EmailMessage

import pytest
from pydantic import SecretStr

from crdswatch.channels import CHANNELS, ChannelPausedError, EmailChannel, MailChannel
from crdswatch.errors import PermanentDeliveryError, TransientDeliveryError
from crdswatch.render.email_headers import apply_headers, build_headers, sanitise_header
from tests.support.fixtures_channels import smtp_pki, smtp_server, smtp_tls_server  # noqa: F401
from tests.support.smtp_server import Pki, SmtpTestServer, running_smtp_server

WHEN = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)


def notice(
    n: int = 1, to: str = "alice@example.org", subject: str = "New context hst_1234.pmap"
) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "crdswatch <notices@example.org>"
    msg["To"] = to
    msg.set_content(f"plain body {n}\n")
    msg.add_alternative(f"<p>html body {n}</p>", subtype="html")
    return apply_headers(msg, build_headers(
        message_id=f"<notice-{n}@crdswatch.example.org>",
        date=WHEN,
        list_id="hst.crdswatch.example.org",
        list_name="HST context notices",
        unsubscribe_url="https://crdswatch.example.org/u/abc",
        subject=subject,
    ))


def test_registry_is_explicit() -> None:
    assert set(CHANNELS) == {"email", "slack", "webhook"}
    assert CHANNELS["email"] is MailChannel  # over EmailChannel's sessions (channels.mail)


async def test_starttls_auth_send_preserves_message(smtp_server: SmtpTestServer) -> None:
    channel = EmailChannel(smtp_server.settings(password=SecretStr(smtp_server.password)))
    result = await channel.send(notice())
    assert result.accepted == ("alice@example.org",) and not result.refused
    [received] = smtp_server.messages
    assert received.login == "crdswatch" and received.rcpt_tos == ("alice@example.org",)
    parsed = received.parsed()
    assert parsed["Message-ID"] == "<notice-1@crdswatch.example.org>"
    assert parsed["Date"] == "Mon, 06 May 2024 07:08:09 +0000"
    assert parsed["List-Id"] == '"HST context notices" <hst.crdswatch.example.org>'
    assert parsed["List-Unsubscribe"] == "<https://crdswatch.example.org/u/abc>"
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert parsed["Auto-Submitted"] == "auto-generated"
    assert parsed.get_content_type() == "multipart/alternative"
    parts = [p.get_content_type() for p in parsed.iter_parts()]
    assert parts == ["text/plain", "text/html"]


async def test_malicious_subject_cannot_inject_headers(smtp_server: SmtpTestServer) -> None:
    evil = "Context\r\nBcc: victim@example.org\r\n\r\nforged body\nX-Evil: 1\u2028Y: 2"
    await EmailChannel(smtp_server.settings()).send(notice(subject=evil))
    [received] = smtp_server.messages
    parsed = received.parsed()
    assert parsed["Bcc"] is None and parsed["X-Evil"] is None and parsed["Y"] is None
    assert received.rcpt_tos == ("alice@example.org",)
    assert parsed["Subject"] == "Context Bcc: victim@example.org forged body X-Evil: 1 Y: 2"
    header_block = received.data.split(b"\r\n\r\n", 1)[0]
    assert b"\r\nBcc:" not in header_block and b"\nX-Evil" not in header_block


def test_header_helpers() -> None:
    assert sanitise_header(" a\r\n\tb\x00c ") == "a b c"
    headers = build_headers(
        message_id="x@y", date=WHEN, list_id="<l.example>", unsubscribe_url="http://insecure.example/u"
    )
    assert headers["Message-ID"] == "<x@y>" and headers["List-Id"] == "<l.example>"
    assert "List-Unsubscribe-Post" not in headers  # one-click only for https
    with pytest.raises(ValueError):
        build_headers(message_id="x@y", date=datetime(2024, 1, 1), list_id="l.example")
    with pytest.raises(ValueError):
        build_headers(message_id="x@y>\r\nBcc: a@b", date=WHEN, list_id="l.example")


async def test_wrong_password_pauses_channel(smtp_server: SmtpTestServer) -> None:
    channel = EmailChannel(smtp_server.settings(password="wrong"))
    with pytest.raises(ChannelPausedError, match="535") as caught:
        await channel.send(notice())
    assert caught.value.code == 535
    assert smtp_server.messages == []


async def test_untrusted_certificate_pauses_channel(smtp_server: SmtpTestServer) -> None:
    channel = EmailChannel(smtp_server.settings(ca_file=None))
    with pytest.raises(ChannelPausedError, match="certificate"):
        await channel.send(notice())


@pytest.mark.parametrize(
    ("command", "code", "error"),
    [
        ("RCPT", 451, TransientDeliveryError),
        ("RCPT", 550, PermanentDeliveryError),
        ("DATA", 451, TransientDeliveryError),
        ("DATA", 550, PermanentDeliveryError),
    ],
)
async def test_reply_codes_map_to_error_kinds(
    smtp_server: SmtpTestServer, command: str, code: int, error: type[Exception]
) -> None:
    smtp_server.fail_next(command, code)  # type: ignore[arg-type]
    with pytest.raises(error) as caught:
        await EmailChannel(smtp_server.settings()).send(notice())
    assert not isinstance(caught.value, ChannelPausedError)
    assert str(code) in str(caught.value)
    assert caught.value.code == code  # type: ignore[attr-defined]  # machine-readable, besides the text


async def test_partial_refusal_is_reported_not_raised(smtp_server: SmtpTestServer) -> None:
    smtp_server.reject_address("gone@example.org", 550)
    smtp_server.reject_address("busy@example.org", 451)
    msg = notice(to="alice@example.org, gone@example.org, busy@example.org")
    result = await EmailChannel(smtp_server.settings()).send(msg)
    assert result.accepted == ("alice@example.org",)
    assert result.permanent_refused == ("gone@example.org",)
    assert result.transient_refused == ("busy@example.org",)
    assert smtp_server.messages[0].rcpt_tos == ("alice@example.org",)


async def test_implicit_tls_mode(smtp_tls_server: SmtpTestServer) -> None:
    await EmailChannel(smtp_tls_server.settings()).send(notice())
    [received] = smtp_tls_server.messages
    assert received.login == "crdswatch"


async def test_plaintext_only_when_configured_and_warns(
    smtp_pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    with running_smtp_server(smtp_pki, security="none") as server:
        with caplog.at_level(logging.WARNING, logger="crdswatch.channels.email"):
            channel = EmailChannel(server.settings(username=None))
        assert "plaintext" in caplog.text
        await channel.send(notice())
        assert len(server.messages) == 1


async def test_starttls_mode_refuses_a_server_without_starttls(smtp_pki: Pki) -> None:
    with running_smtp_server(smtp_pki, security="none") as server:
        channel = EmailChannel(server.settings(security="starttls", username=None))
        with pytest.raises(ChannelPausedError):
            await channel.send(notice())
        assert server.messages == []


async def test_connection_refused_is_transient(smtp_server: SmtpTestServer) -> None:
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(TransientDeliveryError) as caught:
        await EmailChannel(smtp_server.settings(port=port)).send(notice())
    assert not isinstance(caught.value, ChannelPausedError)


async def test_silent_server_times_out_as_transient(smtp_server: SmtpTestServer) -> None:
    accepted: list[asyncio.StreamWriter] = []

    async def never_greet(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)  # hold the connection open without the 220 greeting

    silent = await asyncio.start_server(never_greet, "127.0.0.1", 0)
    port = silent.sockets[0].getsockname()[1]
    async with silent:
        with pytest.raises(TransientDeliveryError, match="timed out") as caught:
            await EmailChannel(smtp_server.settings(port=port, timeout=0.2)).send(notice())
        assert isinstance(caught.value, TimeoutError)
        for writer in accepted:
            writer.close()
            await writer.wait_closed()


async def test_message_without_recipients_is_permanent(smtp_server: SmtpTestServer) -> None:
    msg = notice()
    del msg["To"]
    with pytest.raises(PermanentDeliveryError, match="no recipients"):
        await EmailChannel(smtp_server.settings()).send(msg)


async def test_one_session_serves_many_messages(smtp_server: SmtpTestServer) -> None:
    channel = EmailChannel(smtp_server.settings())
    async with channel.session() as session:
        for n in range(5):
            await session.send(notice(n))
        assert session.connections == 1 and session.sent == 5
    assert len(smtp_server.messages) == 5
    assert smtp_server.sessions_used == {1}


async def test_session_continues_after_a_refused_message(smtp_server: SmtpTestServer) -> None:
    smtp_server.fail_next("DATA", 550)
    async with EmailChannel(smtp_server.settings()).session() as session:
        with pytest.raises(PermanentDeliveryError):
            await session.send(notice(1))
        await session.send(notice(2))
        assert session.connections == 1


# -- one SMTP connection owner -----------------------------------------------------------------------


async def test_alerts_list_replies_and_the_drain_share_one_session_class(smtp_server: SmtpTestServer) -> None:
    from crdswatch.channels import email
    from crdswatch.channels.smtp_pipeline import PipelinedSession

    assert not hasattr(email, "EmailSession")  # the second connection owner is gone
    async with EmailChannel(smtp_server.settings()).session() as session:  # what alerts and list replies use
        assert isinstance(session, PipelinedSession)  # the class of the drain's pool
        await session.send(notice())
        assert session.connections == 1 and session.sent == 1


@pytest.mark.parametrize("case", ["good", "wrong password", "untrusted certificate", "tls to a starttls port"])
async def test_check_config_and_the_daemon_agree_on_the_smtp_server(
    smtp_server: SmtpTestServer, case: str,
) -> None:
    """check-config's SMTP check and a daemon send go through the same handshake
    (EmailChannel.connect): one passes exactly when the other does."""
    from crdswatch.channels.email import SmtpSettings as RuntimeSmtp
    from crdswatch.cli.ops import _smtp_check
    from crdswatch.config import SmtpSettings

    values = {"host": smtp_server.host, "port": smtp_server.port, "security": "starttls", "username": "crdswatch",
              "password": "correct horse", "sender": "crdswatch <notices@example.org>",
              "ca_file": str(smtp_server.pki.ca_file), "timeout": 5}
    if case == "wrong password":
        values["password"] = "nope"
    elif case == "untrusted certificate":
        del values["ca_file"]  # the system's trust store does not know the test CA
    elif case == "tls to a starttls port":
        values["security"] = "tls"
    config = SmtpSettings.model_validate(values)
    check = await _smtp_check(config)
    try:
        await EmailChannel(RuntimeSmtp.from_config(config)).send(notice())
        daemon_ok = True
    except (TransientDeliveryError, PermanentDeliveryError):
        daemon_ok = False
    assert check["ok"] is daemon_ok is (case == "good"), (case, check)
    assert len(smtp_server.messages) == (1 if case == "good" else 0)
