"""Bounces as Mailman 3 handles them, with real peers and a controlled clock: DSNs (RFC 3464) to the
VERP address raise the member's score once a day, temporary failures do not count, a 5xx at send
time counts, delivery stops at 5 points, three warnings 7 days apart, then removal; the admin is told."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from crdswatch.config import load_settings
from crdswatch.devtools.replay import ReplayServer
from crdswatch.notices.bounce_score import BounceRules, BounceState, due_action, register_bounce, warning_sent
from crdswatch.service.daemon import Daemon
from tests.support.daemon_env import Clock, until
from tests.support.fixtures_channels import smtp_pki, smtp_server  # noqa: F401
from tests.support.lists_env import DOMAIN, free_port, inbound_send, lists_config
from tests.support.smtp_server import SmtpTestServer
from tests.support.store_db import BACKENDS, database_url

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
NIRSPEC = "nirspec_reffiles_upd"
BOB = "bob@example.com"
ADMIN = "listmaster@example.org"
VERP = f"{NIRSPEC}-bounces+bob=example.com@{DOMAIN}"


def dsn(recipient: str, *, action: str = "failed", status: str = "5.1.1") -> bytes:
    """A real-shaped RFC 3464 delivery status notification, as Postfix writes them."""
    return (
        "From: MAILER-DAEMON@mx.example.com (Mail Delivery System)\r\n"
        f"To: {VERP}\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        "Auto-Submitted: auto-replied\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="BOUND"\r\n'
        "\r\n"
        "--BOUND\r\nContent-Type: text/plain\r\n\r\nI'm sorry to have to inform you...\r\n"
        "--BOUND\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.example.com\r\n\r\n"
        f"Final-Recipient: rfc822; {recipient}\r\n"
        f"Original-Recipient: rfc822;{recipient}\r\n"
        f"Action: {action}\r\nStatus: {status}\r\n"
        "Diagnostic-Code: smtp; 550 5.1.1 <bob@example.com>: Recipient address rejected\r\n\r\n"
        "--BOUND\r\nContent-Type: text/rfc822-headers\r\n\r\nSubject: CRDS notice\r\n\r\n"
        "--BOUND--\r\n"
    ).encode()


@pytest.fixture(params=BACKENDS)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with database_url(request.param, tmp_path) as url:
        yield url


async def test_dsns_and_5xx_score_disable_warn_and_remove(
    db: str, tmp_path: Path, replay: ReplayServer, smtp_server: SmtpTestServer,  # noqa: F811
) -> None:
    port = free_port()
    config = lists_config(tmp_path, database=db, server_url=replay.url, smtp=smtp_server, protocol="lmtp",
                          http_port=free_port(), inbound_port=port)
    clock = Clock(NOW)
    daemon = Daemon(load_settings(config), clock=clock)
    await daemon.start_inbound()
    lists = daemon.lists
    assert lists is not None
    member = lambda: lists.store.lists.get_member(NIRSPEC, BOB)
    admin = lambda: [m for m in smtp_server.messages if ADMIN in m.rcpt_tos]
    to_bob = lambda: [m for m in smtp_server.messages if BOB in m.rcpt_tos]
    try:
        await daemon.poll(daemon.watches[0])  # baseline
        lists.add_member(NIRSPEC, BOB, NOW)
        # Day 0: the submission server refuses bob at send time (a 5xx): one point.
        smtp_server.reject_address(BOB, 550)
        replay.activate_next()
        await daemon.poll(daemon.watches[0])
        await until(lambda: getattr(member(), "bounce_score", 0) == 1, "the 5xx counted as a bounce")
        smtp_server.handler.rejected_addresses.clear()
        # The same day, a DSN too: still one point (at most one per day).
        await inbound_send(port, "lmtp", "", VERP, dsn(BOB))
        assert member().bounce_score == 1  # type: ignore[union-attr]
        # A temporary failure never counts.
        clock.advance(days=1)
        await inbound_send(port, "lmtp", "", VERP, dsn(BOB, action="delayed", status="4.4.1"))
        assert member().bounce_score == 1  # type: ignore[union-attr]
        # Days 1..4: permanent DSNs; at 5 points delivery is disabled and the admin told.
        for day in range(1, 5):
            clock.now = NOW + timedelta(days=day)
            await inbound_send(port, "lmtp", "", VERP, dsn(BOB))
        state = member()
        assert state is not None and state.bounce_score == 5 and not state.enabled
        await until(lambda: any("disabled" in m.parsed()["Subject"] for m in admin()), "admin told of disable")
        # A new activation queues nothing for bob now.
        before = len(to_bob())
        replay.activate_next()
        await daemon.poll(daemon.watches[0])
        assert len(to_bob()) == before
        # Three warnings, 7 days apart (the first at once), then removal; the admin is told.
        for n in range(3):
            await daemon.list_checks()
            await until(lambda n=n: len(to_bob()) == before + n + 1, f"warning {n + 1}")  # type: ignore[misc]
            await daemon.list_checks()  # nothing more within the interval
            assert len(to_bob()) == before + n + 1
            clock.advance(days=7)
        await daemon.list_checks()
        assert member() is None
        await until(lambda: any("removed" in m.parsed()["Subject"] for m in admin()), "admin told of removal")
        # A bounce nobody can be found in goes to the admin, with the bounce attached.
        await inbound_send(port, "lmtp", "", f"{NIRSPEC}-bounces@{DOMAIN}",
                           b"From: postmaster@x.example\r\nSubject: ???\r\n\r\nsomething went wrong\r\n")
        await until(lambda: any("unrecognised" in m.parsed()["Subject"] for m in admin()), "unrecognised bounce")
    finally:
        await daemon.shutdown()


def test_score_rules_are_mailman_defaults() -> None:
    rules = BounceRules()
    s, out = register_bounce(BounceState(), NOW, rules)
    assert (s.score, out) == (1, "counted")
    s, out = register_bounce(s, NOW + timedelta(hours=5), rules)
    assert (s.score, out) == (1, "ignored")  # one point per day
    s, out = register_bounce(s, NOW + timedelta(days=9), rules)
    assert (s.score, out) == (1, "counted")  # stale after 7 days: starts again
    for day in range(10, 14):
        s, out = register_bounce(s, NOW + timedelta(days=day), rules)
    assert (s.score, out, s.enabled) == (5, "disabled", False)
    t = NOW + timedelta(days=13)
    assert due_action(s, t, rules) == "warn"
    for _ in range(3):
        s = warning_sent(s, t)
        assert due_action(s, t + timedelta(days=6), rules) is None
        t += timedelta(days=7)
    assert due_action(s, t, rules) == "remove"
