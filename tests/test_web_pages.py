"""The web pages through Starlette's TestClient on a real daemon (replay server, SQLite store):
status (HTML and JSON), the archive, feeds, security headers and escaping of hostile text."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from io import BytesIO
from pathlib import Path

import feedparser
import pytest
from starlette.testclient import TestClient

from crdswatch.devtools.replay import ReplayServer
from crdswatch.service.daemon import Daemon
from crdswatch.service.web.app import create_app
from tests.support.daemon_env import Clock, free_port, make_daemon, until, write_config
from tests.support.fixtures_channels import smtp_pki, smtp_server  # noqa: F401
from tests.support.smtp_server import SmtpTestServer

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
NIRSPEC = """
[[subscribers]]
name = "nirspec-team"
webhook_url = "http://127.0.0.1:9/hook"
webhook_secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
instruments = ["nirspec"]
"""


@pytest.fixture
async def daemon(tmp_path: Path, replay: ReplayServer) -> AsyncIterator[Daemon]:
    d = make_daemon(write_config(tmp_path, server_url=replay.url, subscribers=NIRSPEC), Clock(NOW))
    await d.poll(d.watches[0])  # baseline
    for _ in range(2):
        replay.activate_next()
        await d.poll(d.watches[0])
    yield d
    await d.shutdown()


def client(daemon: Daemon) -> TestClient:
    return TestClient(create_app(daemon), base_url="http://127.0.0.1:8077")


async def test_status_page_and_json_agree(daemon: Daemon, replay: ReplayServer) -> None:
    with client(daemon) as http:
        status = http.get("/api/status").json()
        page = http.get("/")
    src = status["sources"][0]
    assert status["healthy"] is True and status["health"] == "ok"
    assert (src["observatory"], src["state"], src["context"]) == ("jwst", "latest", replay.context)
    assert src["last_successful_poll"] is not None and src["consecutive_failures"] == 0
    assert set(status["outbox"]) >= {"pending", "sent", "dead"}
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert replay.context in page.text and "Healthy" in page.text and replay.url in page.text


async def test_archive_lists_every_activation_and_shows_the_full_notice(daemon: Daemon) -> None:
    seen = daemon.store.list_activations(limit=10)
    newest = seen[0]
    with client(daemon) as http:
        index = http.get("/activations").text
        assert [m for m in re.findall(r'href="/activations/([^"]+)"', index)][:3] == [a.context for a in seen]
        detail = http.get(f"/activations/{newest.context}")
        assert detail.status_code == 200
        assert f"{daemon.watches[0].key.split('|')[0]}/context_table/{newest.context}" in detail.text
        assert "Who was told, and why" in detail.text
        for change in (newest.diff or {})["changes"][:5]:  # every changed file is on the page
            if change.get("new_file"):
                assert change["new_file"] in detail.text
        assert http.get("/activations/jwst_9999.pmap").status_code == 404
        assert http.get("/activations/..%2fetc").status_code == 404


async def test_instrument_and_all_feeds_parse(daemon: Daemon) -> None:
    seen = [a for a in daemon.store.list_activations(limit=10) if a.diff]
    instrument = next(c["instrument"] for c in seen[0].diff["changes"] if c.get("instrument"))  # type: ignore[index]
    with client(daemon) as http:
        r = http.get(f"/instruments/jwst/{instrument}/feed.atom")
        assert r.headers["content-type"].startswith("application/atom+xml")
        feed = feedparser.parse(BytesIO(r.content))
        assert feed.bozo == 0 and seen[0].context in feed.entries[0].title
        assert all(instrument.upper() in e.summary for e in feed.entries)
        empty = feedparser.parse(BytesIO(http.get("/instruments/jwst/nosuch/feed.atom").content))
        assert empty.bozo == 0 and empty.entries == []
        assert http.get("/lists/nosuch/feed.atom").status_code == 404


async def test_security_headers_and_no_third_party_assets(daemon: Daemon) -> None:
    with client(daemon) as http:
        for path in ("/", "/activations", "/api/status", "/healthz", "/nope"):
            r = http.get(path)
            assert r.headers["x-content-type-options"] == "nosniff"
            assert r.headers["referrer-policy"] == "no-referrer"
            csp = r.headers["content-security-policy"]
            assert "default-src 'none'" in csp and "unsafe-inline" not in csp
        page = http.get("/").text
        assert http.get("/static/crdswatch.css").status_code == 200
    assets = re.findall(r'(?:href|src)="([^"]+)"', page)
    assert all(a.startswith(("/", daemon.watches[0].key.split("|")[0])) for a in assets), assets
    assert "<script" not in page and "style=" not in page


async def test_hostile_server_text_is_escaped(daemon: Daemon) -> None:
    newest = daemon.store.list_activations(limit=1)[0]
    with daemon.store.engine.begin() as conn:
        from sqlalchemy import text
        conn.execute(text("UPDATE activations SET description = :d WHERE id = :i"),
                     {"d": '<script>alert(1)</script><img src=x onerror=alert(2)> \x1b[31m', "i": newest.id})
    with client(daemon) as http:
        for path in ("/", f"/activations/{newest.context}"):
            body = http.get(path).text
            assert "<script>alert" not in body and "<img src=x" not in body and "\x1b" not in body
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in http.get(f"/activations/{newest.context}").text


async def test_status_command_prints_what_the_daemon_serves(tmp_path: Path, replay: ReplayServer) -> None:
    from tests.support.daemon_env import cli_async

    port = free_port()
    config = write_config(tmp_path, server_url=replay.url, http_port=port)
    d = make_daemon(config, Clock(NOW))
    await d.start_http()
    try:
        down = await cli_async("status", "--config", str(config))
        assert down.returncode == 1 and "UNHEALTHY: " in down.stdout and "no successful poll yet" in down.stdout
        await d.poll(d.watches[0])
        as_json = await cli_async("status", "--json", "--config", str(config))
        assert as_json.returncode == 0, as_json.stderr
        data = json.loads(as_json.stdout)
        assert data["healthy"] and data["sources"][0]["context"] == replay.context
        text = await cli_async("status", "--config", str(config))
        assert text.returncode == 0 and text.stdout.startswith("healthy: ok") and replay.context in text.stdout
    finally:
        await d.shutdown()
    gone = await cli_async("status", "--config", str(config))
    assert gone.returncode == 2 and "no daemon answering at" in gone.stderr


async def test_forms_need_csrf_and_the_subscribe_form_is_rate_limited(
    tmp_path: Path, replay: ReplayServer, smtp_server: SmtpTestServer,  # noqa: F811
) -> None:
    from datetime import timedelta

    from crdswatch.notices.manage_token import make_manage_token
    from crdswatch.notices.unsubscribe import make_token
    from tests.support.lists_env import lists_config

    config = lists_config(tmp_path, database=f"sqlite:///{tmp_path}/state.db", server_url=replay.url,
                          smtp=smtp_server, protocol="lmtp", http_port=free_port(), inbound_port=free_port())
    d = make_daemon(config, Clock(NOW))
    target = "/lists/nirspec_reffiles_upd/subscribe"
    try:
        with client(d) as http:
            assert http.post(target, data={"email": "a@example.org"}).status_code == 403  # no cookie, no field
            page = http.get("/lists").text
            csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', page).group(1)  # type: ignore[union-attr]
            evil = http.post(target, data={"email": "a@example.org", "csrf": csrf},
                             headers={"origin": "https://evil.example"})
            assert evil.status_code == 403
            assert http.post(target, data={"email": "a@example.org", "csrf": "0" * 64}).status_code == 403
            ok = http.post(target, data={"email": "a@example.org", "csrf": csrf})
            assert ok.status_code == 200 and "confirmation mail is on its way" in ok.text
            codes = [http.post(target, data={"email": f"b{i}@example.org", "csrf": csrf}).status_code
                     for i in range(12)]
            assert codes[:9] == [200] * 9 and set(codes[9:]) == {429}
            assert http.post("/confirm/" + "0" * 40, data={"csrf": "x"}).status_code == 403

            secret = b"one-click-secret-for-tests"
            expired = make_manage_token(secret, "nobody", NOW - timedelta(seconds=1))
            assert "expired" in http.get(f"/manage/{expired}").text
            forged = make_manage_token(b"another key", "nobody", NOW + timedelta(days=1))
            assert "signature" in http.get(f"/manage/{forged}").text
            unsub = make_token(secret, "nobody", "email:a@example.org")  # another kind of token
            assert http.get(f"/manage/{unsub}").status_code == 400
    finally:
        await d.shutdown()


def _section(html: str, list_name: str) -> str:
    start = html.index(f'<section class="card" id="{list_name}">')
    return html[start:html.index("</section>", start)]


async def test_subscribe_form_offers_narrowing_from_the_current_context_and_carries_it_to_the_confirmation(
    tmp_path: Path, replay: ReplayServer, smtp_server: SmtpTestServer, jwst_mappings: Path,  # noqa: F811
) -> None:
    from crdswatch.contexts.library import MappingLibrary
    from crdswatch.contexts.narrowing import narrowing_options
    from crdswatch.store.lists import member_subscriber_name
    from tests.support.lists_env import lists_config

    config = lists_config(tmp_path, database=f"sqlite:///{tmp_path}/state.db", server_url=replay.url,
                          smtp=smtp_server, protocol="lmtp", http_port=free_port(), inbound_port=free_port())
    d = make_daemon(config, Clock(NOW))
    miri, who = "miri_reffiles_upd", "ada@example.org"
    try:
        with client(d) as http:  # before any context: no narrowing yet, subscribing still works
            empty = _section(http.get("/lists").text, miri)
            assert "offered once the first context has been seen" in empty and 'name="reftypes"' not in empty
            csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', empty).group(1)  # type: ignore[union-attr]
            early = http.post(f"/lists/{miri}/subscribe", data={"email": who, "csrf": csrf, "reftypes": "flat"})
            assert early.status_code == 400 and "not in the current context" in early.text
        await d.poll(d.watches[0])  # baseline: jwst_0500.pmap
        await d.warm_narrowing()  # what the poll started in the background: read the context once
        expected = narrowing_options(replay.context, MappingLibrary.from_dir(jwst_mappings), ["miri"])
        assert "flat" in expected.reftypes and "MIR_IMAGE" in expected.values("EXP_TYPE")
        with client(d) as http:
            html = http.get("/lists").text
            section = _section(html, miri)
            offered = re.findall(r'name="reftypes" value="([^"]+)"', section)
            assert offered == list(expected.reftypes)  # exactly what the context holds for MIRI
            for name, values in expected.parameters:
                shown = re.search(rf'<select name="p_{name}" multiple[^>]*>(.*?)</select>', section, re.DOTALL)
                assert shown, name
                assert re.findall(r'<option value="([^"]+)"', shown.group(1)) == list(values)
            assert len(expected.values("EXP_TYPE")) <= d.limits.narrowing_values
            assert replay.context in section
            csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', html).group(1)  # type: ignore[union-attr]
            target = f"/lists/{miri}/subscribe"

            # Hostile and wrong choices: refused, clearly, escaped, nothing sent or stored.
            sent = len(smtp_server.messages)
            for bad in ({"reftypes": "nosuch"}, {"p_EXP_TYPE": "NRS_IFU"}, {"p_NOSUCH": "X"},
                        {"p_EXP_TYPE": "<script>alert(1)</script>"}, {"surprise": "1"}):
                r = http.post(target, data={"email": who, "csrf": csrf, **bad})
                assert r.status_code == 400, bad
                assert "Nothing was sent" in r.text and "<script>alert" not in r.text
                assert f'value="{who}"' in _section(r.text, miri)  # the form comes back filled in
            assert "&#39;nosuch&#39; is not in the current context" in http.post(
                target, data={"email": who, "csrf": csrf, "reftypes": "nosuch"}).text
            assert len(smtp_server.messages) == sent and d.store.lists.members() == []

            ok = http.post(target, data={"email": who, "csrf": csrf, "reftypes": ["flat", "dark"],
                                         "p_EXP_TYPE": "MIR_IMAGE"})
            assert ok.status_code == 200 and "confirmation mail is on its way" in ok.text
            assert d.store.lists.members() == []  # nothing before the confirmation
            from tests.support.lists_env import next_mail

            mail = (await next_mail(smtp_server, who, 0)).parsed()
            body = mail.get_body(("plain",)).get_content()  # type: ignore[union-attr]
            assert "Notices would be narrowed to: reference types DARK, FLAT; EXP_TYPE MIR_IMAGE." in body
            token = re.search(r"/confirm/([0-9a-f]{40})", body).group(1)  # type: ignore[union-attr]
            shown = http.get(f"/confirm/{token}").text
            assert "Only notices about: <b>reference types DARK, FLAT; EXP_TYPE MIR_IMAGE</b>" in shown
            assert d.store.lists.members() == []  # GET changes nothing
            done = http.post(f"/confirm/{token}", data={"csrf": csrf})
            assert done.status_code == 200 and "Subscribed" in done.text and "narrowed to" in done.text
        member = d.store.get_subscriber(member_subscriber_name(miri, who))
        assert member is not None
        assert member.config.reftypes == ("dark", "flat") and member.config.parameters == {"EXP_TYPE": ("MIR_IMAGE",)}
        assert member.config.instruments == ("miri",)  # the list's own filters still apply
        d.lists.sync_members(NOW)  # type: ignore[union-attr]  # a restart keeps the member's narrowing
        again = d.store.get_subscriber(member_subscriber_name(miri, who))
        assert again is not None and again.config.parameters == {"EXP_TYPE": ("MIR_IMAGE",)}

        # The member's settings page shows the narrowing and changes it within the same offer.
        from datetime import timedelta

        from crdswatch.notices.manage_token import make_manage_token

        link = "/manage/" + make_manage_token(b"one-click-secret-for-tests", member_subscriber_name(miri, who),
                                              NOW + timedelta(days=1))
        with client(d) as http:
            settings = http.get(link).text
            assert re.findall(r'name="reftypes" value="([^"]+)" checked', settings) == ["dark", "flat"]
            assert '<option value="MIR_IMAGE" selected>' in settings
            csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', settings).group(1)  # type: ignore[union-attr]
            wrong = http.post(link, data={"csrf": csrf, "action": "update", "p_EXP_TYPE": "NRS_IFU"})
            assert wrong.status_code == 400 and "Not saved" in wrong.text
            saved = http.post(link, data={"csrf": csrf, "action": "update", "reftypes": "flat",
                                          "p_EXP_TYPE": ["MIR_IMAGE", "MIR_LRS-FIXEDSLIT"], "digest": "weekly"})
            assert saved.status_code == 200 and "Saved." in saved.text
        changed = d.store.get_subscriber(member_subscriber_name(miri, who))
        assert changed is not None and changed.config.own == {
            "reftypes": ["flat"], "digest": "weekly", "parameters": {"EXP_TYPE": ["MIR_IMAGE", "MIR_LRS-FIXEDSLIT"]}}
    finally:
        await d.shutdown()


async def test_a_context_that_cannot_be_read_offers_the_archives_reference_types_and_the_next_poll_retries(
    tmp_path: Path, replay: ReplayServer, smtp_server: SmtpTestServer, monkeypatch: pytest.MonkeyPatch,  # noqa: F811
) -> None:
    """Over the daemon's own HTTP server: the offer is read on the daemon's loop, as in production."""
    import httpx

    monkeypatch.setenv("CRDSWATCH_CACHE", str(tmp_path / "cache"))  # no mapping downloaded by other tests

    from tests.support.lists_env import lists_config

    port = free_port()
    config = lists_config(tmp_path, database=f"sqlite:///{tmp_path}/state.db", server_url=replay.url,
                          smtp=smtp_server, protocol="lmtp", http_port=port, inbound_port=free_port())
    d = make_daemon(config, Clock(NOW))
    lists, d.lists = d.lists, None  # no background read of the context while the archive fills
    await d.start_http()
    try:
        await d.poll(d.watches[0])  # baseline jwst_0500
        replay.activate_next()
        await d.poll(d.watches[0])  # jwst_0501: changes MIRI distortion, filteroffset, specwcs
        d.lists = lists
        replay.inject_fault("http500", 100_000, target="download")  # the mappings cannot be fetched now
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as http:
            first = _section((await http.get("/lists")).text, "miri_reffiles_upd")
            assert re.findall(r'name="reftypes" value="([^"]+)"', first) == ["distortion", "filteroffset", "specwcs"]
            assert "<select" not in first  # no parameter values without the rmaps
            await until(lambda: not d.narrowing._pending, "the failed read to end")  # it may outlive the wait
            assert d.narrowing._failed
            again = _section((await http.get("/lists")).text, "miri_reffiles_upd")
            assert again == first and not d.narrowing._pending  # a page does not retry a failed read
            replay.clear_faults()
            await d.warm_narrowing()  # what the next poll does
            full = _section((await http.get("/lists")).text, "miri_reffiles_upd")
        assert len(re.findall(r'name="reftypes"', full)) > 10 and '<select name="p_EXP_TYPE"' in full
        assert not d.narrowing._failed
    finally:
        await d.shutdown()
