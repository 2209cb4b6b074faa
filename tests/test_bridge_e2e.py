"""The bridge end to end with real peers on loopback: upstream mail delivered by aiosmtplib to the
real inbound listener, the replay CRDS server, aiosmtpd (STARTTLS + AUTH) receiving the notices.
Both orders: a post before its activation ("not active as of", then "Announced on ..." in the
activation's notice), and an activation before its post ("Active in jwst_0502.pmap")."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import aiosmtplib
import httpx
import pytest

from crdswatch.config import load_settings
from crdswatch.devtools.replay import ReplayServer
from crdswatch.service.daemon import Daemon
from tests.support import upstream_mail as um
from tests.support.daemon_env import Clock, until
from tests.support.fixtures_channels import smtp_pki, smtp_server  # noqa: F401
from tests.support.lists_env import DOMAIN, free_port, inbound_send, lists_config, next_mail, raw_headers, to
from tests.support.smtp_server import ReceivedMessage, SmtpTestServer
from tests.support.store_db import BACKENDS, database_url

NOW = datetime(2019, 8, 1, 12, 0, tzinfo=UTC)
ANN, MIA, PAT = "ann@nirspec.example.org", "mia@miri.example.org", "pat@program.example.org"
UPSTREAM = f"""
[[upstream]]
name = "nirspec_reffiles_upd"
address = "upstream+nirspec@{DOMAIN}"
list_id = "{um.LIST_ID}"
auto_confirm = true

[[upstream]]
name = "miri_reffiles_upd"
address = "upstream+miri@{DOMAIN}"

[[upstream]]
name = "mast"
kind = "mast"
address = "upstream+mast@{DOMAIN}"

[[subscribers]]
name = "ann"
email = ["{ANN}"]
instruments = ["nirspec"]

[[subscribers]]
name = "mia"
email = ["{MIA}"]
instruments = ["miri"]

[[subscribers]]
name = "pat"
email = ["{PAT}"]
instruments = ["fgs"]
programs = ["1234"]
"""


@pytest.fixture(params=BACKENDS)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with database_url(request.param, tmp_path) as url:
        yield url


def text_of(message: ReceivedMessage) -> str:
    body = message.parsed().get_body(preferencelist=("plain",))
    assert body is not None
    return " ".join(str(body.get_content()).split())


async def test_posts_activations_and_mast_tied_together(
    db: str, tmp_path: Path, replay: ReplayServer, smtp_server: SmtpTestServer,  # noqa: F811
) -> None:
    inbound_port, http_port = free_port(), free_port()
    config = lists_config(tmp_path, database=db, server_url=replay.url, smtp=smtp_server, protocol="lmtp",
                          http_port=http_port, inbound_port=inbound_port, extra=UPSTREAM)
    daemon = Daemon(load_settings(config), clock=Clock(NOW))
    await daemon.start_inbound()
    send = lambda rcpt, data: inbound_send(inbound_port, "lmtp", "owner-list@listserv.stsci.edu", rcpt, data)
    try:
        await daemon.poll(daemon.watches[0])  # baseline jwst_0500

        # 1. Post before activation: MIRI announces a distortion file that jwst_0501 will activate.
        miri = um.plain_post("New MIRI distortion jwst_miri_distortion_0028.asdf delivered (REDCAT-77).\n",
                             subject="MIRI distortion update", message_id="<miri-1@listserv.stsci.edu>")
        await send(f"upstream+miri@{DOMAIN}", miri)
        await send(f"upstream+miri@{DOMAIN}", miri)  # redelivered by the MTA: nothing twice
        post = await next_mail(smtp_server, MIA, 0)
        assert raw_headers(post)["Subject"] == "[miri_reffiles_upd] MIRI distortion update"
        assert "Not active on the server as of 2019-08-01 12:00:00 UTC: jwst_miri_distortion_0028.asdf" in text_of(post)
        assert "Tickets: REDCAT-77" in text_of(post)
        replay.activate_next()  # jwst_0501
        await daemon.poll(daemon.watches[0])
        activation = await next_mail(smtp_server, MIA, 1)
        assert "jwst_0501.pmap" in raw_headers(activation)["Subject"]
        assert "Announced on miri_reffiles_upd on 2019-07-30: MIRI distortion update" in text_of(activation)
        assert len(to(smtp_server, MIA)) == 2 and to(smtp_server, ANN) == []

        # 2. Activation before post: jwst_0502 brings NIRSpec darks; the post comes afterwards.
        replay.activate_next()
        await daemon.poll(daemon.watches[0])
        await next_mail(smtp_server, ANN, 0)  # the activation notice
        nirspec = um.plain_post("The NIRSpec darks jwst_nirspec_dark_0139.fits and others are now in CRDS.\n",
                                subject="NIRSpec darks", message_id="<nirspec-9@listserv.stsci.edu>")
        await send(f"upstream+nirspec@{DOMAIN}", nirspec)
        post = await next_mail(smtp_server, ANN, 1)
        assert "Active in jwst_0502.pmap" in text_of(post) and "jwst_nirspec_dark_0139.fits" in text_of(post)
        assert "https://crdswatch.example.org/activations/jwst_0502.pmap" in text_of(post)

        # 3. LISTSERV's confirmation request is answered from the subscribed address, not passed on.
        await send(f"upstream+nirspec@{DOMAIN}", um.confirmation_request("5E6F7A8B"))
        reply = await next_mail(smtp_server, "LISTSERV@LISTSERV.STSCI.EDU", 0)
        assert reply.mail_from == f"upstream+nirspec@{DOMAIN}"
        assert raw_headers(reply)["Subject"] == "Re: Command confirmation request (5E6F7A8B)"
        assert raw_headers(reply)["Auto-Submitted"] == "auto-replied"

        # 4. MAST: program 1234 reprocessed; only its follower hears, once, with the likely cause.
        mast = um.mast_mail(um.mast_events(count=37, archived="2019-08-01T10:00:00"))
        await send(f"upstream+mast@{DOMAIN}", mast)
        await send(f"upstream+mast@{DOMAIN}", mast)
        notice = await next_mail(smtp_server, PAT, 0)
        assert raw_headers(notice)["Subject"] == "[MAST JWST] program 1234: 37 files reprocessed on 2019-08-01"
        assert "Likely cause: jwst_0502.pmap" in text_of(notice)

        # The archive page shows the post beside its activation (the web pages' archive).
        await daemon.start_http()
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{http_port}", timeout=10) as web:
            page = (await web.get("/activations/jwst_0501.pmap")).text
        assert "Announced upstream" in page and "MIRI distortion update" in page
        assert "<code>jwst_miri_distortion_0028.asdf</code>" in page

        # 5. Not an upstream or list address: refused at RCPT.
        with pytest.raises(aiosmtplib.SMTPRecipientsRefused):
            await send(f"upstream+nobody@{DOMAIN}", miri)
        await until(lambda: not daemon.store.outbox_rows(status="pending"), "the outbox to drain")
        assert len(to(smtp_server, PAT)) == 1 and len(to(smtp_server, MIA)) == 2
        admin = to(smtp_server, "listmaster@example.org")
        assert not [m for m in admin if "Command confirmation" in raw_headers(m)["Subject"]]
    finally:
        await daemon.shutdown()


async def test_archive_feed_polled_by_the_daemon_then_a_private_archive_alerts(
    tmp_path: Path, replay: ReplayServer, smtp_server: SmtpTestServer,  # noqa: F811
) -> None:
    from tests.support.http_sink import ScriptedResponse, running_http_sink
    from tests.test_upstream_feed import RSS

    with running_http_sink() as sink:
        extra = UPSTREAM.replace(f'address = "upstream+miri@{DOMAIN}"',
                                 f'address = "upstream+miri@{DOMAIN}"\nfeed_url = "{sink.url}/rss"')
        config = lists_config(tmp_path, database=f"sqlite:///{tmp_path / 's.db'}", server_url=replay.url,
                              smtp=smtp_server, protocol="lmtp", http_port=free_port(), inbound_port=free_port(),
                              extra=extra)
        daemon = Daemon(load_settings(config), clock=Clock(NOW))
        miri = next(u for u in daemon.settings.upstream if u.name == "miri_reffiles_upd")
        sink.respond(ScriptedResponse(200, {"Content-Type": "application/rss+xml", "ETag": '"v1"'}, RSS),
                     ScriptedResponse(304, {}, b""),
                     *[ScriptedResponse(403, {}, b"Forbidden")] * 3)
        try:
            await daemon.bridge.poll_feed(miri)  # two entries: two posts for the MIRI subscriber
            await daemon.bridge.poll_feed(miri)  # 304: nothing new
            assert sink.requests[1].headers["if-none-match"] == '"v1"'
            assert len(daemon.store.outbox_rows()) == 2
            for _ in range(3):
                await daemon.bridge.poll_feed(miri)
            assert daemon.bridge.failures["miri_reffiles_upd"] == 3
            alert = await next_mail(smtp_server, "listmaster@example.org", 0)
            assert raw_headers(alert)["Subject"] == "[crdswatch] alert: upstream"
            assert "HTTP 403: the archive is private" in text_of(alert)
        finally:
            await daemon.shutdown()


async def test_feed_alert_after_one_alerts_on_the_first_failed_feed_poll(
    tmp_path: Path, replay: ReplayServer, smtp_server: SmtpTestServer,  # noqa: F811
) -> None:
    from tests.support.http_sink import ScriptedResponse, running_http_sink

    with running_http_sink() as sink:
        extra = UPSTREAM.replace(f'address = "upstream+miri@{DOMAIN}"',
                                 f'address = "upstream+miri@{DOMAIN}"\nfeed_url = "{sink.url}/rss"')
        config = lists_config(tmp_path, database=f"sqlite:///{tmp_path / 's.db'}", server_url=replay.url,
                              smtp=smtp_server, protocol="lmtp", http_port=free_port(), inbound_port=free_port(),
                              extra=extra + "\n[limits]\nfeed_alert_after = 1\n")
        daemon = Daemon(load_settings(config), clock=Clock(NOW))
        assert daemon.settings.limits.feed_alert_after == 1
        miri = next(u for u in daemon.settings.upstream if u.name == "miri_reffiles_upd")
        sink.respond(*[ScriptedResponse(403, {}, b"Forbidden")] * 2)
        try:
            await daemon.bridge.poll_feed(miri)
            assert daemon.bridge.failures["miri_reffiles_upd"] == 1
            alert = await next_mail(smtp_server, "listmaster@example.org", 0)
            assert raw_headers(alert)["Subject"] == "[crdswatch] alert: upstream"
            assert "miri_reffiles_upd: 1 consecutive failed feed polls" in text_of(alert)
            await daemon.bridge.poll_feed(miri)  # the second failure of the same run: no second alert
            assert daemon.metrics.alerts.labels("upstream")._value.get() == 1
        finally:
            await daemon.shutdown()
