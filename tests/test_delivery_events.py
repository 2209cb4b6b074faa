"""A delivery that goes dead is never silent: every send, retry and death is a log event naming the
subscriber, channel, key and reason, and the rows that died in one drain cycle reach the admin as one
mail naming them all (a real SMTP peer on loopback refuses two subscribers for good)."""

from __future__ import annotations

from pathlib import Path

import structlog

from crdswatch.devtools.replay import ReplayServer
from tests.support.daemon_env import Clock, make_daemon, until, write_config
from tests.support.fixtures_channels import smtp_pki, smtp_server  # noqa: F401
from tests.support.smtp_server import SmtpTestServer
from tests.test_service import NOW

SUBSCRIBERS = """
[[subscribers]]
name = "gone-a"
email = ["gone-a@example.org"]

[[subscribers]]
name = "gone-b"
email = ["gone-b@example.org"]

[[subscribers]]
name = "fine"
email = ["fine@example.org"]

[[subscribers]]
name = "later"
email = ["later@example.org"]
"""


async def test_dead_rows_are_logged_and_alerted_once_per_drain(
    tmp_path: Path, replay: ReplayServer, smtp_server: SmtpTestServer,  # noqa: F811
) -> None:
    config = write_config(tmp_path, server_url=replay.url, smtp=smtp_server, subscribers=SUBSCRIBERS,
                          extra='[alerts]\nadmin_email = ["ops@example.org"]')
    smtp_server.reject_address("gone-a@example.org", 550)
    smtp_server.reject_address("gone-b@example.org", 550)
    smtp_server.reject_address("later@example.org", 451)  # a temporary refusal: a retry, not a death
    clock = Clock(NOW)
    daemon = make_daemon(config, clock)
    watch = daemon.watches[0]
    try:
        await daemon.poll(watch)  # baseline
        replay.activate_next()
        with structlog.testing.capture_logs() as logs:
            await daemon.poll(watch)  # the new activation: queued, then drained at once
            await until(lambda: any(m.rcpt_tos == ("ops@example.org",) for m in smtp_server.messages),
                        "the admin alert")
        events = {(e["event"], e.get("subscriber")): e for e in logs if str(e["event"]).startswith("delivery ")}
        assert set(events) == {("delivery dead", "gone-a"), ("delivery dead", "gone-b"),
                               ("delivery sent", "fine"), ("delivery retry", "later")}, events
        dead = events[("delivery dead", "gone-a")]
        assert dead["log_level"] == "error" and dead["channel"].startswith("email")
        assert dead["key"] and "550" in dead["reason"] and "gone-a@example.org" in dead["reason"], dead
        retry = events[("delivery retry", "later")]
        assert retry["log_level"] == "warning" and "451" in retry["reason"] and retry["attempt"] == 1

        alerts = [m for m in smtp_server.messages if m.rcpt_tos == ("ops@example.org",)]
        assert len(alerts) == 1, [m.parsed()["Subject"] for m in alerts]
        mail = alerts[0].parsed()
        assert mail["Subject"] == "[crdswatch] alert: dead"
        body = mail.get_content()
        ids = {str(r.id): r.subscriber for r in daemon.store.outbox_rows(status="dead")}
        assert sorted(ids.values()) == ["gone-a", "gone-b"]
        for row_id, name in ids.items():
            assert f"#{row_id}  {name}  email" in body, body
        assert "2 outbox deliveries dead" in body and "later" not in body and "fine" not in body

        # a drain with no new deaths mails nobody
        before = len(smtp_server.messages)
        await daemon.drain()
        assert len(smtp_server.messages) == before
    finally:
        await daemon.shutdown()
