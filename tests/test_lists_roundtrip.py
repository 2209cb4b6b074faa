"""A mailing list people join themselves, end to end with real peers on loopback: aiosmtplib into the
real inbound listener (LMTP and SMTP), aiosmtpd (STARTTLS + AUTH) as the outgoing sink, a replay
CRDS server, the daemon's web confirmation page, SQLite and PostgreSQL."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import aiosmtplib
import httpx
import pytest

from crdswatch.config import load_settings
from crdswatch.devtools.replay import ReplayServer
from crdswatch.service.daemon import Daemon
from tests.support.daemon_env import Clock, until
from tests.support.fixtures_channels import smtp_pki, smtp_server  # noqa: F401
from tests.support.lists_env import (
    DOMAIN,
    free_port,
    inbound_send,
    lists_config,
    mail,
    next_mail,
    raw_headers,
    to,
    token_in,
)
from tests.support.smtp_server import ReceivedMessage, SmtpTestServer
from tests.support.store_db import BACKENDS, database_url

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
NIRSPEC = "nirspec_reffiles_upd"
JANE, BOB = "jane@uni.example.edu", "bob@example.com"


@pytest.fixture(params=BACKENDS)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with database_url(request.param, tmp_path) as url:
        yield url


def check_list_headers(received: ReceivedMessage, member: str) -> None:
    """RFC 2369/2919/8058 headers, valid as raw bytes: no encoded words, angle-bracketed URIs."""
    h = raw_headers(received)
    local, _, domain = member.partition("@")
    assert received.mail_from == f"{NIRSPEC}-bounces+{local}={domain}@{DOMAIN}"  # VERP
    assert h["List-Id"] == f'"JWST NIRSpec reference file updates" <{NIRSPEC}.{DOMAIN}>'
    assert h["List-Help"] == f"<mailto:{NIRSPEC}-request@{DOMAIN}?subject=help>"
    assert h["List-Subscribe"] == f"<mailto:{NIRSPEC}-join@{DOMAIN}>"
    assert re.fullmatch(rf"<mailto:{NIRSPEC}-leave@{re.escape(DOMAIN)}>, "
                        r"<https://crdswatch\.example\.org/unsubscribe\?token=[A-Za-z0-9_.%=-]+>",
                        h["List-Unsubscribe"]), h["List-Unsubscribe"]
    assert h["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert h["List-Archive"] == f"<https://crdswatch.example.org/lists/{NIRSPEC}/feed.atom>"
    assert h["List-Post"] == "NO"
    assert h["Auto-Submitted"] == "auto-generated"
    assert not [name for name, value in h.items() if name.startswith("List-") and "=?" in value]


@pytest.mark.parametrize("protocol", ["lmtp", "smtp"])
async def test_join_confirm_notice_leave_round_trip(
    protocol: str, db: str, tmp_path: Path, replay: ReplayServer, smtp_server: SmtpTestServer,  # noqa: F811
) -> None:
    http_port, inbound_port = free_port(), free_port()
    config = lists_config(tmp_path, database=db, server_url=replay.url, smtp=smtp_server, protocol=protocol,
                          http_port=http_port, inbound_port=inbound_port)
    daemon = Daemon(load_settings(config), clock=Clock(NOW))
    await daemon.start_http()
    await daemon.start_inbound()
    send = lambda frm, rcpt, data: inbound_send(inbound_port, protocol, frm, rcpt, data)
    try:
        await daemon.poll(daemon.watches[0])  # baseline jwst_0500

        # Jane joins by mail, LISTSERV style, and confirms by replying.
        await send(JANE, f"{NIRSPEC}-subscribe-request@{DOMAIN}", mail(JANE, f"{NIRSPEC}-subscribe-request@{DOMAIN}"))
        confirmation = await next_mail(smtp_server, JANE, 0)
        token = token_in(confirmation)
        assert raw_headers(confirmation)["Auto-Submitted"] == "auto-replied"
        assert f"https://crdswatch.example.org/confirm/{token}" in confirmation.parsed().get_content()
        assert daemon.lists is not None and daemon.lists.members(NIRSPEC) == []  # double opt-in
        await send(JANE, f"{NIRSPEC}-request@{DOMAIN}", mail(JANE, f"{NIRSPEC}-request@{DOMAIN}", f"Re: confirm {token}"))
        welcome = await next_mail(smtp_server, JANE, 1)
        assert raw_headers(welcome)["Subject"].startswith("Welcome")

        # Bob joins (Mailman style) and confirms on the web page: GET shows, only POST confirms.
        await send(BOB, f"{NIRSPEC}-join@{DOMAIN}", mail(BOB, f"{NIRSPEC}-join@{DOMAIN}"))
        bob_token = token_in(await next_mail(smtp_server, BOB, 0))
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{http_port}", timeout=5) as web:
            shown = await web.get(f"/confirm/{bob_token}")
            assert shown.status_code == 200 and BOB in shown.text and "<form method=post" in shown.text
            assert [m.address for m in daemon.lists.members(NIRSPEC)] == [JANE]
            csrf = re.search(r'name=csrf value="([^"]+)"', shown.text)
            assert csrf is not None
            done = await web.post(f"/confirm/{bob_token}", data={"csrf": csrf.group(1)})
            assert done.status_code == 200 and "now a member" in done.text
            again = await web.post(f"/confirm/{bob_token}", data={"csrf": csrf.group(1)})
            assert again.status_code == 400 and "already used" in again.text
        assert [m.address for m in daemon.lists.members(NIRSPEC)] == [BOB, JANE]

        # A real activation reaches both members with proper list headers, as raw bytes.
        replay.activate_next()
        await daemon.poll(daemon.watches[0])
        check_list_headers(await next_mail(smtp_server, JANE, 2), JANE)
        check_list_headers(await next_mail(smtp_server, BOB, 2), BOB)  # bob: confirmation, welcome, notice

        # A forged leave from Bob's address only asks Bob; Jane leaves and confirms by mail.
        await send("mallory@evil.example", f"{NIRSPEC}-leave@{DOMAIN}", mail(BOB, f"{NIRSPEC}-leave@{DOMAIN}"))
        assert raw_headers(await next_mail(smtp_server, BOB, 3))["Subject"].startswith("confirm ")
        await send(JANE, f"{NIRSPEC}-leave@{DOMAIN}", mail(JANE, f"{NIRSPEC}-leave@{DOMAIN}"))
        leave_token = token_in(await next_mail(smtp_server, JANE, 3))
        await send(JANE, f"{NIRSPEC}-confirm+{leave_token}@{DOMAIN}", mail(JANE, f"{NIRSPEC}-confirm+{leave_token}@{DOMAIN}"))
        assert "have left" in raw_headers(await next_mail(smtp_server, JANE, 4))["Subject"]
        assert [m.address for m in daemon.lists.members(NIRSPEC)] == [BOB]

        # No more notices for Jane; Bob still gets them.
        replay.activate_next()
        await daemon.poll(daemon.watches[0])
        await next_mail(smtp_server, BOB, 4)
        assert len(to(smtp_server, JANE)) == 5
    finally:
        await daemon.shutdown()


async def test_forged_expired_reused_wrong_list_tokens_loops_floods_and_bad_mail(
    tmp_path: Path, replay: ReplayServer, smtp_server: SmtpTestServer,  # noqa: F811
) -> None:
    http_port, inbound_port = free_port(), free_port()
    config = lists_config(tmp_path, database=f"sqlite:///{tmp_path}/state.db", server_url=replay.url,
                          smtp=smtp_server, protocol="lmtp", http_port=http_port, inbound_port=inbound_port)
    clock = Clock(NOW)
    daemon = Daemon(load_settings(config), clock=clock)
    await daemon.start_inbound()
    send = lambda frm, rcpt, data: inbound_send(inbound_port, "lmtp", frm, rcpt, data)
    who = "carol@example.net"
    try:
        assert daemon.lists is not None
        # Unknown addresses and the posting address are refused at RCPT time.
        for rcpt in (f"nope-join@{DOMAIN}", f"{NIRSPEC}@{DOMAIN}", f"{NIRSPEC}-join@elsewhere.org"):
            with pytest.raises(aiosmtplib.SMTPRecipientsRefused) as refused:
                await send(who, rcpt, mail(who, rcpt))
            assert refused.value.recipients[0].code == 550
        # Oversized and headerless mail: a clear refusal, and the listener lives on.
        with pytest.raises(aiosmtplib.SMTPResponseException) as big:  # at MAIL FROM (SIZE=) or at DATA
            await send(who, f"{NIRSPEC}-join@{DOMAIN}", mail(who, "x", body="x" * 70000))
        assert big.value.code == 552
        with pytest.raises(aiosmtplib.SMTPDataError) as bad:
            await send(who, f"{NIRSPEC}-join@{DOMAIN}", b"\r\n\r\njust a body\r\n")
        assert bad.value.code == 550

        # Wrong list: a nirspec token sent to the miri confirm address is refused.
        await send(who, f"{NIRSPEC}-join@{DOMAIN}", mail(who, f"{NIRSPEC}-join@{DOMAIN}"))
        token = token_in(await next_mail(smtp_server, who, 0))
        await send(who, f"miri_reffiles_upd-confirm+{token}@{DOMAIN}", mail(who, "x"))
        assert "not done" in raw_headers(await next_mail(smtp_server, who, 1))["Subject"]
        forged = "0123456789abcdef" * 2 + "01234567"
        await send(who, f"{NIRSPEC}-confirm+{forged}@{DOMAIN}", mail(who, "x"))
        assert "not done" in raw_headers(await next_mail(smtp_server, who, 2))["Subject"]
        clock.advance(hours=49)  # expired
        await send(who, f"{NIRSPEC}-confirm+{token}@{DOMAIN}", mail(who, "x"))
        assert "expired" in (await next_mail(smtp_server, who, 3)).parsed().get_content()
        assert daemon.lists.members(NIRSPEC) == []
        await send(who, f"{NIRSPEC}-join@{DOMAIN}", mail(who, "x"))
        fresh = token_in(await next_mail(smtp_server, who, 4))
        await send(who, f"{NIRSPEC}-confirm+{fresh}@{DOMAIN}", mail(who, "x"))
        await next_mail(smtp_server, who, 5)
        await send(who, f"{NIRSPEC}-confirm+{fresh}@{DOMAIN}", mail(who, "x"))  # reused
        assert "already used" in (await next_mail(smtp_server, who, 6)).parsed().get_content()

        # Loops: an auto-reply, a bounce-like empty return path, our own X-Loop: never answered.
        loopy = "robot@example.net"
        await send(loopy, f"{NIRSPEC}-join@{DOMAIN}", mail(loopy, "x", Auto_Submitted="auto-replied"))
        await send("", f"{NIRSPEC}-join@{DOMAIN}", mail(loopy, "x"))
        await send(loopy, f"{NIRSPEC}-request@{DOMAIN}", mail(loopy, "x", "help", X_Loop=f"crdswatch@{DOMAIN}"))
        # A flood from one address: answered up to the per-address limit, then ignored.
        flood = "flood@example.net"
        for _ in range(15):
            await send(flood, f"{NIRSPEC}-join@{DOMAIN}", mail(flood, "x"))
        await until(lambda: len(to(smtp_server, flood)) >= 10, "flood replies")
        assert daemon.inbound is not None
        await until(lambda: not daemon.inbound.handler.tasks, "every reply handed to the sink")  # type: ignore[union-attr]
        assert to(smtp_server, loopy) == [] and len(to(smtp_server, flood)) == 10
        metrics = (await daemon.metrics_page()).decode()
        assert 'crdswatch_inbound_mail_total{outcome="refused_rcpt"} 3.0' in metrics
        assert 'crdswatch_inbound_mail_total{outcome="malformed"} 1.0' in metrics
        outcomes = {r.outcome for r in daemon.lists.store.lists.requests(limit=200)}
        assert {"ignored", "rate-limited", "refused", "confirmation-sent", "subscribed"} <= outcomes
    finally:
        await daemon.shutdown()


def test_lists_cli_counts_members_and_the_operator_adds_and_removes(
    tmp_path: Path, smtp_server: SmtpTestServer,  # noqa: F811
) -> None:
    import json

    from tests.support.daemon_env import cli, cli_parallel

    config = lists_config(tmp_path, database=f"sqlite:///{tmp_path}/state.db", server_url="http://127.0.0.1:9",
                          smtp=smtp_server, protocol="lmtp", http_port=free_port(), inbound_port=free_port())
    c = ("--config", str(config))
    added, again = cli("lists", "add", NIRSPEC, "Jane@Uni.Example.edu", *c), cli("lists", "add", NIRSPEC, JANE, *c)
    assert added.returncode == 0 and "added to" in added.stdout, added.stderr
    assert "already a member" in again.stdout
    overview, members, plain, unknown, log = cli_parallel(
        ("lists", "--json", *c), ("lists", "members", NIRSPEC, "--json", *c), ("lists", *c),
        ("lists", "members", "nirspec", *c), ("lists", "log", "--json", *c))
    rows = {r["name"]: r for r in json.loads(overview.stdout)}
    assert rows[NIRSPEC]["members"] == 1 and rows["miri_reffiles_upd"]["members"] == 0
    assert rows[NIRSPEC]["description"] == "JWST NIRSpec reference file updates"
    assert rows[NIRSPEC]["join"] == f"{NIRSPEC}-join@{DOMAIN}"
    (member,) = json.loads(members.stdout)
    assert (member["address"], member["delivery"], member["origin"]) == (JANE, "enabled", "operator")
    assert NIRSPEC in plain.stdout and "1 members" in plain.stdout
    assert unknown.returncode == 2 and "no list named 'nirspec'" in unknown.stderr
    assert [r["kind"] for r in json.loads(log.stdout)] == ["add", "add"]
    removed, gone = cli("lists", "remove", NIRSPEC, JANE, *c), cli("lists", "remove", NIRSPEC, JANE, *c)
    assert removed.returncode == 0 and gone.returncode == 1
    assert json.loads(cli("lists", "members", NIRSPEC, "--json", *c).stdout) == []


async def test_a_slow_peer_is_cut_off_at_the_session_deadline(tmp_path: Path) -> None:
    """The deadline is per connection overall: a peer that keeps talking slowly still gets 421."""
    import asyncio

    from crdswatch.app.lists import ListPolicy, ListService
    from crdswatch.notices.list_spec import ListSpec
    from crdswatch.service.inbound import InboundHandler, InboundServer
    from crdswatch.store import Store

    with Store.open(f"sqlite:///{tmp_path}/s.db") as store:
        service = ListService(store, [ListSpec(NIRSPEC, DOMAIN)], ListPolicy(DOMAIN, b"k" * 16))

        async def nothing(_outgoing: object) -> None:
            return None

        server = InboundServer(InboundHandler(service, nothing, lambda: NOW), "127.0.0.1", 0,
                               protocol="lmtp", session_timeout=1.0)
        await server.start()
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            assert (await reader.readline()).startswith(b"220")
            seen = b""
            for _ in range(100):  # a NOOP every 0.1 s resets any idle timer, never the deadline
                writer.write(b"NOOP\r\n")
                await writer.drain()
                line = await asyncio.wait_for(reader.readline(), 5)
                seen += line
                if not line or line.startswith(b"421"):
                    break
                await asyncio.sleep(0.1)
            assert b"421 4.4.2 session time limit reached" in seen
            assert await asyncio.wait_for(reader.read(), 5) == b""  # closed by the server
            writer.close()
        finally:
            await server.stop()


async def test_inbound_bound_trips_show_in_healthz_json_and_metrics(
    tmp_path: Path, replay: ReplayServer, smtp_server: SmtpTestServer,  # noqa: F811
) -> None:
    http_port, inbound_port = free_port(), free_port()
    config = lists_config(tmp_path, database=f"sqlite:///{tmp_path}/state.db", server_url=replay.url,
                          smtp=smtp_server, protocol="smtp", http_port=http_port, inbound_port=inbound_port)
    daemon = Daemon(load_settings(config), clock=Clock(NOW))
    await daemon.start_inbound()
    await daemon.start_http()
    who = "carol@example.net"
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{http_port}", timeout=10) as web:
            before = (await web.get("/healthz?format=json")).json()
            assert before["bounds"]["inbound"] == {"listening": True, "trips": {}, "last_trip": None}
            with pytest.raises(aiosmtplib.SMTPResponseException) as big:
                await inbound_send(inbound_port, "smtp", who, f"{NIRSPEC}-join@{DOMAIN}",
                                   mail(who, "x", body="x" * 70000))
            assert big.value.code == 552
            answer = await web.get("/healthz", headers={"accept": "application/json"})
            inbound = answer.json()["bounds"]["inbound"]
            assert inbound["trips"] == {"oversize": 1}
            assert inbound["last_trip"]["reason"] == "oversize"
            assert "max_message_bytes (65536 bytes)" in inbound["last_trip"]["detail"]
            assert inbound["last_trip"]["at"] == NOW.isoformat()
            plain = await web.get("/healthz")  # the plain contract is unchanged
            assert plain.headers["content-type"].startswith("text/plain") and "{" not in plain.text
            assert plain.status_code == answer.status_code
            status = (await web.get("/api/status")).json()
            assert status["bounds"]["inbound"]["trips"] == {"oversize": 1}
            metrics = (await web.get("/metrics")).text
            assert 'crdswatch_inbound_bound_trips_total{reason="oversize"} 1.0' in metrics
            assert 'crdswatch_inbound_mail_total{outcome="oversize"} 1.0' in metrics
        assert daemon.lists is not None and daemon.lists.members(NIRSPEC) == []
    finally:
        await daemon.shutdown()
