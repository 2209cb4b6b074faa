"""Helpers for the mailing-list tests: a config with [inbound] and [[lists]], aiosmtplib as the
client of the real inbound listener (LMTP or SMTP), and raw-header checks on what was sent."""

from __future__ import annotations

import re
from email.message import EmailMessage
from pathlib import Path

import aiosmtplib

from .daemon_env import free_port, until
from .smtp_server import ReceivedMessage, SmtpTestServer

__all__ = ["DOMAIN", "inbound_send", "lists_config", "next_mail", "raw_headers", "to", "token_in"]

DOMAIN = "lists.example.org"


def lists_config(tmp: Path, *, database: str, server_url: str, smtp: SmtpTestServer, protocol: str,
                 http_port: int, inbound_port: int, extra: str = "") -> Path:
    config = tmp / "crdswatch.toml"
    config.write_text(f"""
[state]
database = "{database}"

[[sources]]
observatory = "jwst"
server_url = "{server_url}"
poll_interval = 60
timeout = 5

[smtp]
host = "127.0.0.1"
port = {smtp.port}
security = "starttls"
username = "crdswatch"
password = "correct horse"
sender = "CRDS notices <crds@example.org>"
ca_file = "{smtp.pki.ca_file}"
timeout = 5

[http]
listen = "127.0.0.1:{http_port}"
public_url = "https://crdswatch.example.org"
unsubscribe_secret = "one-click-secret-for-tests"

[alerts]
admin_email = ["listmaster@example.org"]

[inbound]
listen = "127.0.0.1:{inbound_port}"
protocol = "{protocol}"
domain = "{DOMAIN}"
max_message_bytes = 65536
token_secret = "a-test-token-secret-0123456789"
session_timeout = 20
max_requests_per_address = 10
max_requests_per_hour = 100

[[lists]]
name = "nirspec_reffiles_upd"
description = "JWST NIRSpec reference file updates"
observatories = ["jwst"]

[[lists]]
name = "miri_reffiles_upd"
description = "JWST MIRI reference file updates"
observatories = ["jwst"]
instruments = ["miri"]
{extra}
""")
    return config


def to(server: SmtpTestServer, address: str) -> list[ReceivedMessage]:
    """What the sink received for `address`, in order."""
    return [m for m in server.messages if address in m.rcpt_tos]


async def next_mail(server: SmtpTestServer, address: str, seen: int) -> ReceivedMessage:
    """Mail number `seen + 1` to `address`, once it has arrived."""
    await until(lambda: len(to(server, address)) > seen, f"mail number {seen + 1} to {address}")
    return to(server, address)[seen]


def mail(sender: str, to: str, subject: str = "", body: str = "", **headers: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Message-ID"] = f"<{abs(hash((sender, to, subject, body)))}@client.example>"
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    msg.set_content(body or "\n")
    return msg


async def inbound_send(port: int, protocol: str, mail_from: str, rcpt: str, data: bytes | EmailMessage) -> str:
    """Deliver one message with aiosmtplib, speaking LMTP (LHLO) or SMTP; returns the DATA reply.

    A refused recipient raises aiosmtplib.SMTPRecipientsRefused; a refused message, SMTPDataError.
    """
    raw = data.as_bytes() if isinstance(data, EmailMessage) else data
    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=10, start_tls=False)
    await client.connect()
    try:
        if protocol == "lmtp":
            # aiosmtplib speaks SMTP; LMTP differs only in LHLO (and per-recipient DATA replies,
            # one here because there is one recipient).
            client.last_ehlo_response = await client.execute_command(b"LHLO", b"mta.example")
        _, reply = await client.sendmail(mail_from, [rcpt], raw)
        return reply
    finally:
        try:
            await client.quit()
        except aiosmtplib.SMTPException:
            client.close()


def raw_headers(received: ReceivedMessage) -> dict[str, str]:
    """Header fields as they were on the wire: unfolded, never decoded (RFC 2047 stays visible)."""
    head = received.data.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0].decode("ascii")
    unfolded = re.sub(r"\r?\n[ \t]+", " ", head)
    out: dict[str, str] = {}
    for line in unfolded.splitlines():
        name, _, value = line.partition(":")
        out.setdefault(name.strip(), value.strip())
    return out


def token_in(received: ReceivedMessage) -> str:
    found = re.search(r"confirm ([0-9a-f]{40})", raw_headers(received)["Subject"])
    assert found, raw_headers(received)["Subject"]
    return found.group(1)


__all__ += ["free_port", "mail"]
