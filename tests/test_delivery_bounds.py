"""Bounds on the delivery side: a peer's Retry-After is capped ([limits] retry_after_max), one
whole send has a deadline ([limits] send_deadline), and one slow peer delays only its own queue.

Real peers throughout: the recording HTTP sink (scripted per path, trickling replies a byte at a
time) and the STARTTLS+AUTH SMTP test server, behind an in-process Daemon on the test's clock.
"""

from __future__ import annotations

import asyncio
import math
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from crdswatch.channels.base import parse_retry_after
from crdswatch.devtools.replay import ReplayServer
from crdswatch.limits import DEFAULT_LIMITS
from crdswatch.service.daemon import Daemon
from crdswatch.store import Delivery, RetryPolicy
from tests.support.daemon_env import Clock, make_daemon, write_config
from tests.support.fixtures_channels import http_sink, smtp_pki, smtp_server  # noqa: F401
from tests.support.http_sink import HttpSink, ScriptedResponse
from tests.support.smtp_server import SmtpTestServer

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def hook(name: str, url: str) -> str:
    return f'\n[[subscribers]]\nname = "{name}"\nwebhook_url = "{url}"\nwebhook_secret = "{SECRET}"\n'


def rows_of(daemon: Daemon, subscriber: str) -> list[Delivery]:
    return sorted((r for r in daemon.store.outbox_rows(limit=500) if r.subscriber == subscriber), key=lambda r: r.id)


async def activate_once(daemon: Daemon, replay: ReplayServer) -> None:
    await daemon.poll(daemon.watches[0])  # baseline
    replay.activate_next()
    await daemon.poll(daemon.watches[0])  # processes it, then drains at once


# -- Retry-After (pure) ----------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "expected"), [
    ("17", 17.0),
    ("0", 0.0),
    ("2.5", 2.5),
    ("999999999", DEFAULT_LIMITS.retry_after_max),
    ("1e20", DEFAULT_LIMITS.retry_after_max),
    ("1e400", DEFAULT_LIMITS.retry_after_max),  # float("1e400") is inf
    ("inf", DEFAULT_LIMITS.retry_after_max),
    ("Fri, 31 Dec 9999 23:59:59 GMT", DEFAULT_LIMITS.retry_after_max),
    ("Mon, 24 Nov 2026 12:00:30 GMT", 30.0),
    ("Sun, 01 Jan 2000 00:00:00 GMT", 0.0),  # already past: now
    ("-5", None),
    ("-inf", None),
    ("nan", None),
    ("NaN", None),
    ("soon", None),
    ("", None),
    (None, None),
    ("Mon, 99 Foo 2026 99:99:99 GMT", None),
    ("Mon, 24 Nov 99999999999 12:00:30 GMT", None),
    ("\x00\xff", None),
])
def test_retry_after_never_raises_caps_and_ignores_garbage(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, NOW) == expected


def test_retry_after_cap_is_the_callers() -> None:
    assert parse_retry_after("1e20", NOW, cap=120) == 120
    assert parse_retry_after("Fri, 31 Dec 9999 23:59:59 GMT", NOW, cap=5) == 5
    assert parse_retry_after("60", NOW, cap=120) == 60


def test_retry_policy_is_the_backstop_for_any_hint() -> None:
    policy = RetryPolicy(retry_after_max=600, jitter=lambda: 0.0)
    assert policy.delay(1, 1e20) == timedelta(seconds=600)
    assert policy.delay(1, math.inf) == timedelta(seconds=600)
    assert policy.delay(1, -3) == timedelta(0)
    assert policy.delay(1, math.nan) == timedelta(seconds=15)  # no hint: its own backoff (30 s base)
    assert NOW + policy.delay(1, 1e300) == NOW + timedelta(seconds=600)  # a representable date


# -- Retry-After through the daemon -----------------------------------------------------------------


async def test_a_huge_retry_after_is_capped_and_the_drain_goes_on(
    tmp_path: Path, replay: ReplayServer, http_sink: HttpSink,  # noqa: F811
) -> None:
    http_sink.route("/huge", ScriptedResponse(429, {"Retry-After": "1e20"}, b"slow down"))
    http_sink.route("/y9999", ScriptedResponse(503, {"Retry-After": "Fri, 31 Dec 9999 23:59:59 GMT"}, b"later"))
    http_sink.route("/junk", ScriptedResponse(429, {"Retry-After": "nan"}, b"?"))
    subs = (hook("huge", http_sink.url_for("/huge")) + hook("y9999", http_sink.url_for("/y9999"))
            + hook("junk", http_sink.url_for("/junk")) + hook("fine", http_sink.url_for("/fine")))
    clock = Clock(NOW)
    config = write_config(tmp_path, server_url=replay.url, subscribers=subs, extra="[limits]\nretry_after_max = 900\n")
    daemon = make_daemon(config, clock)
    try:
        await activate_once(daemon, replay)
        assert daemon.health.drain_failures == 0, daemon.health.drain_error
        [huge], [y9999], [junk], [fine] = (rows_of(daemon, n) for n in ("huge", "y9999", "junk", "fine"))
        assert fine.status == "sent"  # the drain went on past the absurd hints
        for row in (huge, y9999):
            assert row.status == "pending" and row.attempts == 1
            assert row.next_attempt_at == clock.now + timedelta(seconds=900)  # the cap, exactly
        assert "HTTP 429" in (huge.last_error or "") and "HTTP 503" in (y9999.last_error or "")
        # no usable hint: the outbox's own backoff (backoff_base 60: 30 to 60 s)
        assert junk.status == "pending"
        assert clock.now + timedelta(seconds=30) <= junk.next_attempt_at <= clock.now + timedelta(seconds=60)
        assert {r.path for r in http_sink.requests} == {"/huge", "/y9999", "/junk", "/fine"}
    finally:
        await daemon.shutdown()


# -- one whole send has a deadline --------------------------------------------------------------------


def slow_rcpt(server: SmtpTestServer, seconds: float) -> Callable[[], None]:
    """RCPT answers after `seconds` (each reply within the client's timeout, the whole send not);
    returns the undo."""
    handler: Any = server.handler
    original = handler.handle_RCPT

    async def slow(*args: Any) -> str:
        await asyncio.sleep(seconds)
        return str(await original(*args))

    handler.handle_RCPT = slow
    return lambda: setattr(handler, "handle_RCPT", original)


async def test_a_send_trickled_byte_by_byte_ends_retry_later_with_a_reason(
    tmp_path: Path, replay: ReplayServer, http_sink: HttpSink, smtp_server: SmtpTestServer,  # noqa: F811
) -> None:
    """Webhook and Slack receivers answer one byte a second (never a read timeout), the SMTP
    server takes longer over RCPT than the whole send may: each row is retried later, with the
    reason, and the drain is not stuck; once the peers are quick the retry is delivered."""
    hold = threading.Event()
    trickle = ScriptedResponse(200, {"Content-Type": "text/plain"}, b"ok", trickle=1.0, hold=hold)
    http_sink.route("/hook", trickle)
    http_sink.route("/slack", trickle)
    subs = (hook("hook", http_sink.url_for("/hook"))
            + f'\n[[subscribers]]\nname = "chat"\nslack_webhook = "{http_sink.url_for("/slack")}"\n'
            + '\n[[subscribers]]\nname = "mail"\nemail = ["mail@example.org"]\n')
    clock = Clock(NOW)
    config = write_config(tmp_path, server_url=replay.url, smtp=smtp_server, subscribers=subs,
                          extra="[limits]\nsend_deadline = 2\n")
    undo = slow_rcpt(smtp_server, 4.0)  # the client's per-reply timeout is 5 s
    daemon = make_daemon(config, clock)
    try:
        await activate_once(daemon, replay)
        assert daemon.health.drain_failures == 0, daemon.health.drain_error
        rows = {n: rows_of(daemon, n)[0] for n in ("hook", "chat", "mail")}
        for name, row in rows.items():
            assert row.status == "pending" and row.attempts == 1 and row.lease_owner is None, name
            assert "DeliveryTimeoutError" in (row.last_error or "")
            assert "send_deadline (2 s)" in (row.last_error or ""), (name, row.last_error)
            assert row.next_attempt_at > clock.now
        assert smtp_server.messages == []
        assert {("request", "/hook"), ("request", "/slack")} <= set(http_sink.events)
        assert ("answered", "/hook") not in http_sink.events  # cut off mid-reply, not answered

        undo()  # the peers are quick again: the retries go out (a fresh SMTP connection)
        http_sink.route("/hook", ScriptedResponse())
        http_sink.route("/slack", ScriptedResponse())
        clock.now = max(r.next_attempt_at for r in rows.values())
        await daemon.drain()
        assert [r.status for n in rows for r in rows_of(daemon, n)] == ["sent"] * 3
        assert [m.rcpt_tos for m in smtp_server.messages] == [("mail@example.org",)]
    finally:
        hold.set()
        await daemon.shutdown()


async def test_an_alert_and_a_list_reply_are_bounded_by_send_deadline_too(
    tmp_path: Path, replay: ReplayServer, smtp_server: SmtpTestServer,  # noqa: F811
) -> None:
    """Mail outside the drain (operator alerts, list replies) gets the same whole-send bound."""
    import structlog

    from crdswatch.app.lists import Outgoing
    from crdswatch.service.inbound import deliver

    config = write_config(tmp_path, server_url=replay.url, smtp=smtp_server,
                          extra='[alerts]\nadmin_email = ["ops@example.org"]\n[limits]\nsend_deadline = 1\n')
    undo = slow_rcpt(smtp_server, 3.0)
    daemon = make_daemon(config, Clock(NOW))
    try:
        with structlog.testing.capture_logs() as logs:
            daemon.alert("test", "an operator alert")
            await asyncio.gather(*daemon._tasks)
            reply = EmailMessage()
            reply["From"], reply["To"], reply["Subject"] = "crds@example.org", "someone@example.org", "re: join"
            reply.set_content("confirm\n")
            assert daemon.senders.email is not None
            await deliver(daemon.senders.email, [Outgoing(reply, "crds@example.org", ("someone@example.org",))], 1.0)
        failed = [e for e in logs if e["event"] in ("alert e-mail failed", "list reply not sent")]
        assert [e["event"] for e in failed] == ["alert e-mail failed", "list reply not sent"]
        assert all("send_deadline (1 s)" in e["error"] for e in failed), failed
        assert smtp_server.messages == []
    finally:
        undo()
        await daemon.shutdown()
