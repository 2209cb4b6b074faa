"""Message-IDs are on the sender's domain, or on [smtp] message_id_domain: never on `.invalid`.

Checked on the raw bytes the SMTP test server received (what a receiving MTA and spam filter
see), for a notice and for an operator alert from the same in-process daemon.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from crdswatch.config import load_settings
from crdswatch.devtools.replay import ReplayServer
from crdswatch.errors import ConfigError
from tests.support.daemon_env import Clock, make_daemon, until, write_config
from tests.support.fixtures_channels import smtp_pki, smtp_server  # noqa: F401
from tests.support.smtp_server import SmtpTestServer

SENDER = 'sender = "CRDS notices <crds@example.org>"'
SUBSCRIBER = '\n[[subscribers]]\nname = "now"\nemail = ["now@example.org"]\n'
ALERTS = '[alerts]\nadmin_email = ["ops@example.org"]\n'


def message_ids(raw: bytes) -> list[bytes]:
    return re.findall(rb"(?im)^message-id:\s*(\S+)\r?$", raw)


@pytest.mark.parametrize(("smtp_line", "domain"), [
    ("", b"example.org"),  # the sender's domain
    ('message_id_domain = "Notices.Example.NET"', b"notices.example.net"),
])
async def test_notice_and_alert_message_ids_use_the_senders_or_the_configured_domain(
    tmp_path: Path, replay: ReplayServer, smtp_server: SmtpTestServer,  # noqa: F811
    smtp_line: str, domain: bytes,
) -> None:
    config = write_config(tmp_path, server_url=replay.url, smtp=smtp_server, subscribers=SUBSCRIBER, extra=ALERTS)
    config.write_text(config.read_text().replace(SENDER, f"{SENDER}\n{smtp_line}"))
    daemon = make_daemon(config, Clock(datetime(2026, 11, 24, 12, 0, tzinfo=UTC)))
    try:
        await daemon.poll(daemon.watches[0])  # baseline
        replay.activate_next()
        await daemon.poll(daemon.watches[0])  # the notice goes out at once
        daemon.alert("test", "an operator alert")
        await until(lambda: len(smtp_server.messages) == 2, "the notice and the alert")
    finally:
        await daemon.shutdown()
    notice, alert = sorted(smtp_server.messages, key=lambda m: m.rcpt_tos)
    assert notice.rcpt_tos == ("now@example.org",) and alert.rcpt_tos == ("ops@example.org",)
    [notice_id] = message_ids(notice.data)
    assert re.fullmatch(rb"<crdswatch\.[0-9a-f]{32}@" + re.escape(domain) + rb">", notice_id), notice_id
    [alert_id] = message_ids(alert.data)
    assert alert_id.endswith(b"@" + domain + b">"), alert_id
    for message in (notice, alert):
        assert b".invalid" not in message.data.split(b"\r\n\r\n", 1)[0]  # no header names one


@pytest.mark.parametrize("value", ["crdswatch.invalid", "invalid", "not a domain", "a@b.org", "<x>", "a..b"])
def test_a_bad_message_id_domain_is_refused_at_load(tmp_path: Path, value: str) -> None:
    config = tmp_path / "c.toml"
    config.write_text(f'[smtp]\n{SENDER}\nmessage_id_domain = "{value}"\n'
                      '[[sources]]\nobservatory = "jwst"\nserver_url = "https://jwst-crds.stsci.edu"\n')
    with pytest.raises(ConfigError, match=r"smtp\.message_id_domain"):
        load_settings(config, {})
