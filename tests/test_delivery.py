"""The outbox drain with real peers: digests on a controlled clock, and every failure path.

An in-process Daemon polls a replay CRDS server and drains into the STARTTLS+AUTH SMTP test
server or the recording HTTP sink; the clock is the test's, so digest slots and backoff are exact.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import structlog

from crdswatch.devtools.replay import ReplayServer
from crdswatch.notices.match import Filters
from crdswatch.notices.subscriptions import Subscription, next_digest_slot
from crdswatch.service.daemon import Daemon
from crdswatch.store import Delivery
from tests.support.daemon_env import Clock, cli_async, make_daemon, write_config
from tests.support.fixtures_channels import http_sink, smtp_pki, smtp_server  # noqa: F401
from tests.support.http_sink import HttpSink, ScriptedResponse
from tests.support.smtp_server import SmtpTestServer

NY = "America/New_York"
# 07:00 in New York (EST): an hour before the 08:00 digest
MORNING = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def sub(digest: str, hour: int = 8, weekday: str = "mon", tz: str = NY) -> Subscription:
    return Subscription("s", ("email:s@example.org",), Filters.of(), digest=digest, digest_hour=hour,
                        digest_weekday=weekday, timezone=tz)


# -- the digest schedule (pure) -----------------------------------------------------------------


def test_immediate_has_no_slot() -> None:
    assert next_digest_slot(sub("immediate"), MORNING) is None


@pytest.mark.parametrize(("after", "slot"), [
    (utc(2026, 11, 24, 12, 0), utc(2026, 11, 24, 13, 0)),  # 07:00 EST -> 08:00 EST the same day
    (utc(2026, 11, 24, 13, 0), utc(2026, 11, 25, 13, 0)),  # exactly at the slot -> the next day's
    (utc(2026, 11, 24, 3, 0), utc(2026, 11, 24, 13, 0)),   # 22:00 EST the day before (UTC date ahead)
    (utc(2026, 3, 7, 14, 0), utc(2026, 3, 8, 12, 0)),      # spring forward on 8 March: 08:00 EDT
    (utc(2026, 10, 31, 13, 0), utc(2026, 11, 1, 13, 0)),   # fall back on 1 November: 08:00 EST
    (utc(2026, 6, 1, 11, 59), utc(2026, 6, 1, 12, 0)),     # summer: 08:00 EDT is 12:00 UTC
])
def test_daily_slot_keeps_the_local_hour_across_dst(after: datetime, slot: datetime) -> None:
    got = next_digest_slot(sub("daily"), after)
    assert got == slot and got.utcoffset() == timedelta(0)
    local = got.astimezone(__import__("zoneinfo").ZoneInfo(NY))
    assert (local.hour, local.minute) == (8, 0)


@pytest.mark.parametrize(("after", "slot"), [
    (utc(2026, 11, 25, 12, 0), utc(2026, 11, 30, 13, 0)),  # Wednesday -> next Monday 08:00 EST
    (utc(2026, 11, 30, 12, 59), utc(2026, 11, 30, 13, 0)),  # Monday 07:59 -> the same morning
    (utc(2026, 11, 30, 13, 0), utc(2026, 12, 7, 13, 0)),   # Monday at the slot -> a week later
    (utc(2026, 10, 28, 12, 0), utc(2026, 11, 2, 13, 0)),   # the week DST ends: 08:00 EST, not EDT
])
def test_weekly_slot(after: datetime, slot: datetime) -> None:
    assert next_digest_slot(sub("weekly", weekday="mon"), after) == slot


def test_weekly_slot_other_zone_and_day() -> None:
    # Friday 17:00 in Tokyo (UTC+9, no DST) is 08:00 UTC
    s = sub("weekly", hour=17, weekday="fri", tz="Asia/Tokyo")
    assert next_digest_slot(s, utc(2026, 11, 24, 0, 0)) == utc(2026, 11, 27, 8, 0)


# -- digests through the daemon ----------------------------------------------------------------

DIGEST_SUBSCRIBERS = f"""
[[subscribers]]
name = "morning"
email = ["morning@example.org"]
digest = "daily"
digest_hour = 8
timezone = "{NY}"

[[subscribers]]
name = "now"
email = ["now@example.org"]
"""


def rows_of(daemon: Daemon, subscriber: str) -> list[Delivery]:
    return sorted((r for r in daemon.store.outbox_rows(limit=500) if r.subscriber == subscriber),
                  key=lambda r: r.id)


async def queue_two_activations(daemon: Daemon, replay: ReplayServer) -> list[str]:
    watch = daemon.watches[0]
    await daemon.poll(watch)  # baseline
    contexts = []
    for _ in range(2):
        contexts.append(replay.activate_next()["context"])  # type: ignore[index]
        await daemon.poll(watch)
    assert daemon.store.get_cursor(watch.key).context == contexts[-1]  # type: ignore[union-attr]
    return contexts


async def test_daily_digest_is_held_until_its_slot_then_sent_as_one_merged_email(
    tmp_path: Path, replay: ReplayServer, smtp_server: SmtpTestServer,  # noqa: F811
) -> None:
    clock = Clock(MORNING)
    daemon = make_daemon(write_config(tmp_path, server_url=replay.url, smtp=smtp_server,
                                      subscribers=DIGEST_SUBSCRIBERS), clock)
    try:
        contexts = await queue_two_activations(daemon, replay)
        # the immediate subscriber got one e-mail per activation at once; the digest waits
        assert [m.rcpt_tos for m in smtp_server.messages] == [("now@example.org",)] * 2
        held = rows_of(daemon, "morning")
        assert [r.context for r in held] == contexts
        slot = utc(2026, 11, 24, 13, 0)  # 08:00 in New York
        assert all(r.status == "pending" and r.next_attempt_at == slot for r in held)

        clock.now = slot - timedelta(seconds=1)
        await daemon.drain()
        assert len(smtp_server.messages) == 2 and all(r.status == "pending" for r in rows_of(daemon, "morning"))

        clock.now = slot
        await daemon.drain()
        digests = [m for m in smtp_server.messages if m.rcpt_tos == ("morning@example.org",)]
        assert len(digests) == 1
        msg = digests[0].parsed()
        text = msg.get_body(preferencelist=("plain",)).get_content()
        assert contexts[0] in msg["Subject"] and contexts[1] in msg["Subject"]
        assert 0 <= text.index(contexts[0]) < text.index(contexts[1])  # oldest first
        html = msg.get_body(preferencelist=("html",)).get_content()
        assert 0 <= html.index(contexts[0]) < html.index(contexts[1])
        assert [(r.status, r.sent_at) for r in rows_of(daemon, "morning")] == [("sent", slot)] * 2
    finally:
        await daemon.shutdown()


async def test_a_digest_that_fails_is_retried_as_one_digest(
    tmp_path: Path, replay: ReplayServer, smtp_server: SmtpTestServer,  # noqa: F811
) -> None:
    """Both rows of a failed digest come due together again, so the retry is still one e-mail."""
    clock = Clock(MORNING)
    daemon = make_daemon(write_config(tmp_path, server_url=replay.url, smtp=smtp_server,
                                      subscribers=DIGEST_SUBSCRIBERS), clock)
    try:
        contexts = await queue_two_activations(daemon, replay)
        clock.now = utc(2026, 11, 24, 13, 0)
        smtp_server.fail_next("RCPT", 451)
        await daemon.drain()
        held = rows_of(daemon, "morning")
        assert [(r.status, r.attempts) for r in held] == [("pending", 1)] * 2
        assert held[0].next_attempt_at == held[1].next_attempt_at > clock.now
        assert all("451" in (r.last_error or "") for r in held)

        clock.now = held[0].next_attempt_at
        await daemon.drain()
        digests = [m for m in smtp_server.messages if m.rcpt_tos == ("morning@example.org",)]
        assert len(digests) == 1 and all(c in digests[0].parsed()["Subject"] for c in contexts)
        assert [r.status for r in rows_of(daemon, "morning")] == ["sent", "sent"]
    finally:
        await daemon.shutdown()


# -- failures ------------------------------------------------------------------------------------

NOW_ONLY = """
[[subscribers]]
name = "now"
email = ["now@example.org"]
"""


async def activate_once(daemon: Daemon, replay: ReplayServer, baseline: bool = True) -> str:
    if baseline:
        await daemon.poll(daemon.watches[0])
    context = replay.activate_next()["context"]  # type: ignore[index]
    await daemon.poll(daemon.watches[0])  # processes it, then drains at once
    return str(context)


async def test_smtp_451_goes_back_to_pending_with_backoff(
    tmp_path: Path, replay: ReplayServer, smtp_server: SmtpTestServer,  # noqa: F811
) -> None:
    clock = Clock(MORNING)
    daemon = make_daemon(write_config(tmp_path, server_url=replay.url, smtp=smtp_server,
                                      subscribers=NOW_ONLY), clock)
    try:
        smtp_server.fail_next("RCPT", 451)
        await activate_once(daemon, replay)
        [row] = rows_of(daemon, "now")
        assert row.status == "pending" and row.attempts == 1 and row.lease_owner is None
        # backoff_base 60: half fixed, half jitter
        assert clock.now + timedelta(seconds=30) <= row.next_attempt_at <= clock.now + timedelta(seconds=60)
        assert "451" in (row.last_error or "") and smtp_server.messages == []
        await daemon.drain()  # not due yet: nothing happens
        assert daemon.store.get_delivery(row.id).attempts == 1  # type: ignore[union-attr]
        clock.now = row.next_attempt_at
        await daemon.drain()
        assert daemon.store.get_delivery(row.id).status == "sent"  # type: ignore[union-attr]
        assert len(smtp_server.messages) == 1
        metrics = daemon.metrics.render().decode()
        assert 'crdswatch_notices_total{channel="email",outcome="retry"} 1.0' in metrics
        assert 'crdswatch_notices_total{channel="email",outcome="sent"} 1.0' in metrics
    finally:
        await daemon.shutdown()


async def test_smtp_550_is_dead_with_the_servers_reason(
    tmp_path: Path, replay: ReplayServer, smtp_server: SmtpTestServer,  # noqa: F811
) -> None:
    clock = Clock(MORNING)
    daemon = make_daemon(write_config(tmp_path, server_url=replay.url, smtp=smtp_server,
                                      subscribers=NOW_ONLY), clock)
    try:
        smtp_server.reject_address("now@example.org", 550)
        await activate_once(daemon, replay)
        [row] = rows_of(daemon, "now")
        assert row.status == "dead" and row.attempts == 1
        assert "550" in (row.last_error or "") and "No such user" in (row.last_error or "")
        assert daemon.store.counts()["dead"] == 1
    finally:
        await daemon.shutdown()


async def test_wrong_smtp_password_pauses_the_channel_and_alerts_once(
    tmp_path: Path, replay: ReplayServer, smtp_server: SmtpTestServer,  # noqa: F811
) -> None:
    clock = Clock(MORNING)
    config = write_config(tmp_path, server_url=replay.url, smtp=smtp_server, smtp_password="wrong",
                          subscribers=NOW_ONLY)
    daemon = make_daemon(config, clock)
    try:
        with structlog.testing.capture_logs() as logs:
            await activate_once(daemon, replay)
        [first] = rows_of(daemon, "now")
        # the notice did nothing wrong: it waits (pending), it is not dead-lettered
        assert first.status == "pending" and "535" in (first.last_error or "")
        assert (first.last_error or "").startswith("ChannelPausedError")
        assert first.next_attempt_at == clock.now + timedelta(seconds=300)  # retried when the pause ends
        alerts = [e for e in logs if e["event"] == "ALERT"]
        assert len(alerts) == 1 and alerts[0]["kind"] == "channel" and "email" in alerts[0]["message"]
        assert 'crdswatch_alerts_total{kind="channel"} 1.0' in daemon.metrics.render().decode()

        # while paused, a new notice and the due retry are not even attempted; no second alert
        clock.now = first.next_attempt_at
        with structlog.testing.capture_logs() as logs:
            await activate_once(daemon, replay, baseline=False)
        rows = rows_of(daemon, "now")
        assert len(rows) == 2 and all(r.status == "pending" for r in rows)
        # they wait for the rest of the pause, untried: a long outage must not burn their attempts
        assert all(r.next_attempt_at >= clock.now + timedelta(seconds=290) for r in rows)
        assert sorted(r.attempts for r in rows) == [0, 1]  # only the first, real try counts
        assert not [e for e in logs if e["event"] == "ALERT"]
        assert 'crdswatch_alerts_total{kind="channel"} 1.0' in daemon.metrics.render().decode()
        assert smtp_server.messages == []
        untried = next(r for r in rows if r.id != first.id)
        assert daemon.store.attempts(untried.id) == []
    finally:
        await daemon.shutdown()


SLACK_AND_HOOK = """
[[subscribers]]
name = "chat"
slack_webhook = "{slack}"

[[subscribers]]
name = "pipeline"
webhook_url = "{hook}"
webhook_secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
"""


async def test_slack_429_honours_retry_after_and_webhook_400_is_dead(
    tmp_path: Path, replay: ReplayServer, http_sink: HttpSink,  # noqa: F811
) -> None:
    clock = Clock(MORNING)
    subs = SLACK_AND_HOOK.format(slack=http_sink.url_for("/slack"), hook=http_sink.url_for("/hook"))
    config = write_config(tmp_path, server_url=replay.url, subscribers=subs)
    daemon = make_daemon(config, clock)
    try:
        await daemon.poll(daemon.watches[0])
        replay.activate_next()

        # The drain sends both notices concurrently: answer each path its own way.
        def scripted(request: object) -> ScriptedResponse:
            path = getattr(request, "path", "")
            if path == "/slack":
                return ScriptedResponse(429, {"Retry-After": "240"}, b"rate_limited")
            return ScriptedResponse(400, {}, b'{"error": "schema mismatch"}')

        original = http_sink.record

        def record(request: object) -> ScriptedResponse:
            original(request)  # type: ignore[arg-type]
            return scripted(request)

        http_sink.record = record  # type: ignore[method-assign]
        await daemon.poll(daemon.watches[0])
        [slack] = rows_of(daemon, "chat")
        assert slack.status == "pending" and slack.attempts == 1
        assert slack.next_attempt_at == clock.now + timedelta(seconds=240)  # the peer's hint, exactly
        assert "429" in (slack.last_error or "")
        [hook] = rows_of(daemon, "pipeline")
        assert hook.status == "dead" and "HTTP 400" in (hook.last_error or "")
        assert "schema mismatch" in (hook.last_error or "")
    finally:
        await daemon.shutdown()

    # the failed sends stay in the outbox, for the operator to see
    out = await cli_async("outbox", "--config", str(config), "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["counts"] == {"pending": 1, "leased": 0, "sent": 0, "dead": 1}
    by_id = {r["id"]: r for r in data["rows"]}
    assert by_id[hook.id]["status"] == "dead" and "HTTP 400" in by_id[hook.id]["last_error"]
    assert by_id[slack.id]["status"] == "pending" and by_id[slack.id]["attempts"] == 1
    assert "payload" not in by_id[hook.id]
    assert http_sink.url_for("/slack") not in out.stdout  # the Slack URL is a secret


async def test_an_email_batch_keeps_each_recipients_outcome_and_headers(
    tmp_path: Path, replay: ReplayServer, smtp_server: SmtpTestServer,  # noqa: F811
) -> None:
    """E-mail goes out in batches (the drain's lanes, MailWiring.send_many): one refused
    recipient is dead with its own reply, the others are sent once each with their own
    envelope, To, Message-ID and List-Id."""
    names = [f"m{i}" for i in range(7)]
    subscribers = "".join(f'[[subscribers]]\nname = "{n}"\nemail = ["{n}@example.org"]\n' for n in names)
    clock = Clock(MORNING)
    daemon = make_daemon(write_config(tmp_path, server_url=replay.url, smtp=smtp_server, subscribers=subscribers),
                         clock)
    try:
        smtp_server.reject_address("m3@example.org", 550)
        await activate_once(daemon, replay)
        rows = {n: rows_of(daemon, n) for n in names}
        assert [r.status for r in rows["m3"]] == ["dead"] and "550" in (rows["m3"][0].last_error or "")
        assert all([r.status for r in rows[n]] == ["sent"] for n in names if n != "m3")
        got = {m.rcpt_tos[0]: m.parsed() for m in smtp_server.messages}
        assert sorted(got) == sorted(f"{n}@example.org" for n in names if n != "m3")
        assert len({msg["Message-ID"] for msg in got.values()}) == len(got)
        assert len(smtp_server.messages) == len(got)  # each once
        for address, msg in got.items():
            assert msg["To"] == address and f"crdswatch-{address.split('@')[0]}." in msg["List-Id"]
    finally:
        await daemon.shutdown()


async def test_a_message_that_cannot_be_prepared_fails_alone_in_its_batch(
    tmp_path: Path, replay: ReplayServer, smtp_server: SmtpTestServer,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Whatever goes wrong preparing one message of an e-mail batch (its links, its list's
    headers) is that message's outcome; the rest of the batch goes out."""
    names = [f"m{i}" for i in range(4)]
    subscribers = "".join(f'[[subscribers]]\nname = "{n}"\nemail = ["{n}@example.org"]\n' for n in names)
    daemon = make_daemon(write_config(tmp_path, server_url=replay.url, smtp=smtp_server, subscribers=subscribers),
                         Clock(MORNING))
    real = daemon.senders._outgoing

    def failing(notice: Any, config: Any, channel: str, to: str, key: str, now: datetime) -> Any:
        if to == "m1@example.org":
            raise ValueError("cannot build the links")
        return real(notice, config, channel, to, key, now)

    monkeypatch.setattr(daemon.senders, "_outgoing", failing)
    try:
        await activate_once(daemon, replay)
        assert [r.status for r in rows_of(daemon, "m1")] == ["dead"]
        assert "cannot build the links" in (rows_of(daemon, "m1")[0].last_error or "")
        assert all([r.status for r in rows_of(daemon, n)] == ["sent"] for n in names if n != "m1")
        assert sorted(m.rcpt_tos[0] for m in smtp_server.messages) == ["m0@example.org", "m2@example.org",
                                                                       "m3@example.org"]
    finally:
        await daemon.shutdown()
