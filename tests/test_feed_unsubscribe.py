"""/feed.atom read by a real feed parser, and RFC 8058 one-click unsubscribe end to end: the link in a
delivered e-mail, the confirmation page, the POST, what is (not) queued afterwards, and restarts."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from io import BytesIO
from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit

import feedparser
import httpx
import pytest

from crdswatch.config import load_settings
from crdswatch.devtools.replay import ReplayServer
from crdswatch.model import SubscriberConfig
from crdswatch.notices.subscriptions import channel_targets
from crdswatch.notices.unsubscribe import BadToken, make_token, read_token, unsubscribe_url
from crdswatch.service.runtime import open_store
from tests.support.daemon_env import Clock, free_port, make_daemon, until, write_config
from tests.support.fixtures_channels import smtp_pki, smtp_server  # noqa: F401
from tests.support.smtp_server import SmtpTestServer

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
SECRET = "unsubscribe-test-secret"


def config_with_http(tmp: Path, replay: ReplayServer, port: int, smtp: SmtpTestServer | None = None,
                     subscribers: str = "") -> Path:
    path = write_config(tmp, server_url=replay.url, smtp=smtp, http_port=port, subscribers=subscribers)
    text = path.read_text().replace(
        "[http]\n", f'[http]\npublic_url = "https://crdswatch.example.org/"\nunsubscribe_secret = "{SECRET}"\n')
    path.write_text(text)
    return path


# -- /feed.atom ----------------------------------------------------------------------------------


async def test_feed_atom_parses_cleanly_newest_first(tmp_path: Path, replay: ReplayServer) -> None:
    port = free_port()
    daemon = make_daemon(config_with_http(tmp_path, replay, port), Clock(NOW))
    await daemon.start_http()
    try:
        watch = daemon.watches[0]
        await daemon.poll(watch)  # the baseline is not news
        contexts = []
        for _ in range(3):
            contexts.append(replay.activate_next()["context"])  # type: ignore[index]
            await daemon.poll(watch)
        async with httpx.AsyncClient(timeout=5) as http:
            r = await http.get(f"http://127.0.0.1:{port}/feed.atom")
        assert r.status_code == 200 and r.headers["content-type"].startswith("application/atom+xml")
        feed = feedparser.parse(BytesIO(r.content))
        assert feed.bozo == 0, feed.get("bozo_exception")
        assert feed.version == "atom10"
        assert feed.feed.title == "crdswatch: CRDS context activations"
        assert feed.feed.id == "https://crdswatch.example.org/feed.atom"
        assert [lk.href for lk in feed.feed.links if lk.rel == "self"] == ["https://crdswatch.example.org/feed.atom"]
        assert feed.feed.updated_parsed[:5] == (2026, 11, 24, 12, 0)

        newest_first = contexts[::-1]
        previous = [*contexts[:-1][::-1], "jwst_0500.pmap"]
        assert [e.title for e in feed.entries] == [
            f"{c} activated (previous {p})" for c, p in zip(newest_first, previous)]
        assert [e.link for e in feed.entries] == [f"{replay.url}/context_table/{c}" for c in newest_first]
        assert len({e.id for e in feed.entries}) == 3
        stored = {a.context: a for a in daemon.store.list_activations(limit=10)}
        for entry, context in zip(feed.entries, newest_first):
            count = len(stored[context].diff["changes"])  # type: ignore[index]
            assert entry.summary.startswith(f"{count} changes.")
            assert entry.updated_parsed is not None
        dates = [e.updated_parsed for e in feed.entries]
        assert dates == sorted(dates, reverse=True)
    finally:
        await daemon.shutdown()


# -- unsubscribe tokens (pure) -------------------------------------------------------------------


def test_tokens_round_trip_and_resist_tampering() -> None:
    token = make_token(b"k", "alice", "email:alice@example.org")
    assert read_token(b"k", token) == ("alice", "email:alice@example.org")
    body, mac = token.split(".")
    forged = make_token(b"k", "mallory", "email:alice@example.org").split(".")[0] + "." + mac
    for bad in (forged, token[:-2], body, "", "..", token + "x", make_token(b"other", "alice", "slack")):
        with pytest.raises(BadToken):
            read_token(b"k", bad)
    url = unsubscribe_url("https://h.example/base/", b"k", "alice", "slack")
    assert url.startswith("https://h.example/base/unsubscribe?token=")
    assert read_token(b"k", parse_qs(urlsplit(url).query)["token"][0]) == ("alice", "slack")


def test_channel_targets_leave_out_unsubscribed_channels() -> None:
    config = SubscriberConfig(email=("a@example.org", "b@example.org"), slack_webhook="https://hooks.slack.com/x",
                              unsubscribed=("email:a@example.org", "slack"))
    assert channel_targets(config) == ("email:b@example.org",)


# -- /unsubscribe end to end ---------------------------------------------------------------------

TWO_ADDRESSES = """
[[subscribers]]
name = "team"
email = ["alice@example.org", "bob@example.org"]
"""


async def test_one_click_unsubscribe_from_a_delivered_email(
    tmp_path: Path, replay: ReplayServer, smtp_server: SmtpTestServer,  # noqa: F811
) -> None:
    port = free_port()
    config = config_with_http(tmp_path, replay, port, smtp_server, TWO_ADDRESSES)
    daemon = make_daemon(config, Clock(NOW))
    await daemon.start_http()
    base = f"http://127.0.0.1:{port}"
    watch = daemon.watches[0]
    try:
        await daemon.poll(watch)
        replay.activate_next()
        await daemon.poll(watch)
        await until(lambda: len(smtp_server.messages) == 2, "two notices")
        alice = next(m.parsed() for m in smtp_server.messages if m.rcpt_tos == ("alice@example.org",))
        assert alice["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        # the bytes as the SMTP peer received them, before any parser decodes them (issue 9): a
        # plain angle-bracketed URI that mail clients turn into an unsubscribe button
        raw = next(m.data for m in smtp_server.messages if m.rcpt_tos == ("alice@example.org",))
        head = re.sub(rb"\r?\n[ \t]+", b" ", raw.split(b"\r\n\r\n", 1)[0]).decode("ascii")
        (line,) = [h for h in head.splitlines() if h.lower().startswith("list-unsubscribe:")]
        assert re.fullmatch(r"List-Unsubscribe: <https://crdswatch\.example\.org/unsubscribe\?token=[^<>\s]+>", line), line
        assert "=?" not in line
        link = re.fullmatch(r"<(.+)>", str(alice["List-Unsubscribe"]))
        assert link and link.group(1).startswith("https://crdswatch.example.org/unsubscribe?token=")
        token = parse_qs(urlsplit(link.group(1)).query)["token"][0]
        target = f"{base}/unsubscribe?token={quote(token)}"

        def unsubscribed() -> list[str]:
            found = daemon.store.get_subscriber("team")
            assert found is not None
            return list(found.config.unsubscribed)

        async with httpx.AsyncClient(timeout=5) as http:
            # GET (a person clicking, or a mail scanner): a confirmation page, nothing changes
            page = await http.get(target)
            assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
            assert re.search(r"<form method=post action=[\"']?unsubscribe", page.text)
            assert f'name=token value="{token}"' in page.text and "alice@example.org" in page.text
            head = await http.head(target)
            assert head.status_code == 200 and head.content == b""
            assert unsubscribed() == []
            assert (await http.put(target, content=b"x")).status_code == 405
            assert unsubscribed() == []

            # a tampered token is refused, by GET and by POST
            tampered = token[:-3] + ("AAA" if not token.endswith("AAA") else "BBB")
            for method in ("GET", "POST"):
                bad = await http.request(method, f"{base}/unsubscribe?token={quote(tampered)}",
                                         content=b"List-Unsubscribe=One-Click")
                assert bad.status_code == 400 and "signature" in bad.text
            assert (await http.post(f"{base}/unsubscribe")).status_code == 400  # no token at all
            assert unsubscribed() == []

            # RFC 8058: POST with the token in the URL and the one-click body
            done = await http.post(target, content=b"List-Unsubscribe=One-Click",
                                   headers={"Content-Type": "application/x-www-form-urlencoded"})
            assert done.status_code == 200 and "unsubscribed" in done.text
            assert unsubscribed() == ["email:alice@example.org"]
            # again, the way the confirmation page's form posts (token in the body): idempotent
            again = await http.post(f"{base}/unsubscribe", data={"token": token})
            assert again.status_code == 200 and unsubscribed() == ["email:alice@example.org"]

        # later notices are not even queued for that address; the other one still gets them
        context = replay.activate_next()["context"]  # type: ignore[index]
        await daemon.poll(watch)
        rows = [r for r in daemon.store.outbox_rows(limit=50) if r.context == context]
        assert [r.channel for r in rows] == ["email:bob@example.org"] and rows[0].status == "sent"
        assert [m.rcpt_tos for m in smtp_server.messages][2:] == [("bob@example.org",)]
    finally:
        await daemon.shutdown()

    # a restart re-seeds subscribers from the config file: the unsubscription survives
    store = open_store(load_settings(config))
    try:
        found = store.get_subscriber("team")
        assert found is not None and found.config.unsubscribed == ("email:alice@example.org",)
        assert found.config.email == ("alice@example.org", "bob@example.org")
    finally:
        store.close()


async def test_a_notice_queued_before_the_unsubscribe_is_not_sent(
    tmp_path: Path, replay: ReplayServer, smtp_server: SmtpTestServer,  # noqa: F811
) -> None:
    """A digest row queued earlier is dropped with a clear reason when its slot comes."""
    port = free_port()
    digest = TWO_ADDRESSES.replace('email = [', 'digest = "daily"\ndigest_hour = 13\nemail = [')
    clock = Clock(NOW)
    daemon = make_daemon(config_with_http(tmp_path, replay, port, smtp_server, digest), clock)
    await daemon.start_http()
    try:
        await daemon.poll(daemon.watches[0])
        replay.activate_next()
        await daemon.poll(daemon.watches[0])
        assert daemon.store.counts()["pending"] == 2
        token = make_token(SECRET.encode(), "team", "email:alice@example.org")
        async with httpx.AsyncClient(timeout=5) as http:
            r = await http.post(f"http://127.0.0.1:{port}/unsubscribe?token={quote(token)}",
                                content=b"List-Unsubscribe=One-Click")
        assert r.status_code == 200
        clock.now = datetime(2026, 11, 24, 13, 0, tzinfo=UTC)
        await daemon.drain()
        rows = {r.channel: r for r in daemon.store.outbox_rows(limit=10)}
        assert rows["email:bob@example.org"].status == "sent"
        dropped = rows["email:alice@example.org"]
        assert dropped.status == "dead" and "unsubscribed" in (dropped.last_error or "")
        assert [m.rcpt_tos for m in smtp_server.messages] == [("bob@example.org",)]
    finally:
        await daemon.shutdown()


async def test_unsubscribe_without_a_secret_configured_is_refused(tmp_path: Path, replay: ReplayServer) -> None:
    port = free_port()
    daemon = make_daemon(write_config(tmp_path, server_url=replay.url, http_port=port), Clock(NOW))
    await daemon.start_http()
    try:
        token = make_token(b"", "team", "slack")
        async with httpx.AsyncClient(timeout=5) as http:
            r = await http.post(f"http://127.0.0.1:{port}/unsubscribe?token={quote(token)}")
        assert r.status_code == 400 and "not configured" in r.text
    finally:
        await daemon.shutdown()


def test_unsubscribed_has_one_owner() -> None:
    """notices.subscriptions decides "unsubscribed" for the queue, the send, the pages and reloads."""
    from crdswatch.notices.subscriptions import channel_targets, unsubscribe, unsubscribed

    config = SubscriberConfig(email=("a@example.org", "b@example.org"), slack_webhook="https://hooks.slack.com/x")
    one = unsubscribe(config, ["email:a@example.org"])
    assert unsubscribed(one) == {"email:a@example.org"} and not config.unsubscribed  # a copy
    assert channel_targets(one) == ("email:b@example.org", "slack")
    every = unsubscribe(one)
    assert unsubscribed(every) == {"email:a@example.org", "email:b@example.org", "slack"}
    assert channel_targets(every) == ()
    assert unsubscribe(config, []) == config  # nothing left: no empty list stored
