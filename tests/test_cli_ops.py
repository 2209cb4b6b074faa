"""The service commands as a user runs them: `python -m crdswatch ...` processes with a tmp config,
against a replay CRDS server, the SMTP test server and the HTTP sink."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from io import BytesIO
from pathlib import Path
from typing import Any

import feedparser

from crdswatch.devtools.replay import ReplayServer
from tests.support.daemon_env import Clock, cli, cli_parallel, free_port, make_daemon, write_config
from tests.support.fixtures_channels import http_sink, smtp_pki, smtp_server  # noqa: F401
from tests.support.http_sink import HttpSink, RecordedRequest, ScriptedResponse
from tests.support.smtp_server import SmtpTestServer

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
WHSEC = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SLACK = "https://hooks.slack.com/services/T000/B000/TOPSECRETTOKEN"


def route(sink: HttpSink, answers: dict[str, ScriptedResponse]) -> None:
    """Answer by path (the drain sends concurrently, so a queue of answers would race)."""
    original = sink.record

    def record(request: RecordedRequest) -> ScriptedResponse:
        default = original(request)
        return answers.get(request.path, default)

    sink.record = record  # type: ignore[method-assign]


def populate(config: Path, replay: ReplayServer, activations: int) -> list[str]:
    """Run the daemon in process: a baseline poll, then `activations` activations, each drained."""

    async def run() -> list[str]:
        daemon = make_daemon(config, Clock(NOW))
        try:
            await daemon.poll(daemon.watches[0])
            contexts = []
            for _ in range(activations):
                contexts.append(str(replay.activate_next()["context"]))  # type: ignore[index]
                await daemon.poll(daemon.watches[0])
            return contexts
        finally:
            await daemon.shutdown()

    return asyncio.run(run())


def ok_json(*args: str) -> Any:
    out = cli(*args, "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


# -- subscribers -----------------------------------------------------------------------------------


def test_subscribers_add_list_show_remove(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text(f"""
[state]
database = "sqlite:///{tmp_path}/state.db"
[[subscribers]]
name = "from-config"
slack_webhook = "{SLACK}"
instruments = ["miri"]
""")
    c = ("--config", str(config))
    added = cli("subscribers", "add", "ifu", "--email", "a@example.org", "--email", "b@example.org",
                "--webhook-url", "https://hooks.example.org/crds?key=HOOKSECRET", "--webhook-secret", WHSEC,
                "--instrument", "NIRSpec", "--param", "EXP_TYPE=NRS_IFU|NRS_MSASPEC", "--digest", "daily",
                "--timezone", "Europe/Paris", *c)
    assert added.returncode == 0, added.stderr
    assert "saved" in added.stdout

    listed_out, shown_out, text, show_text, missing, bad_param, bad_email = cli_parallel(
        ("subscribers", "list", "--json", *c), ("subscribers", "show", "ifu", "--json", *c),
        ("subscribers", "list", *c), ("subscribers", "show", "ifu", *c), ("subscribers", "show", "nobody", *c),
        ("subscribers", "add", "x", "--email", "a@example.org", "--param", "EXP_TYPE", *c),
        ("subscribers", "add", "x", "--email", "not-an-address", *c),
    )
    listed = json.loads(listed_out.stdout)
    assert [s["name"] for s in listed] == ["from-config", "ifu"]
    ifu = listed[1]
    assert ifu["email"] == ["a@example.org", "b@example.org"] and ifu["instruments"] == ["nirspec"]
    assert ifu["parameters"] == {"EXP_TYPE": ["NRS_IFU", "NRS_MSASPEC"]}
    assert ifu["digest"] == "daily" and ifu["timezone"] == "Europe/Paris" and ifu["origin"] == "cli"
    assert ifu["webhook_url"] == ifu["webhook_secret"] == "********"
    assert listed[0]["slack_webhook"] == "********" and listed[0]["origin"] == "config"

    assert json.loads(shown_out.stdout) == ifu
    assert text.returncode == 0 and "email:a@example.org" in text.stdout and "daily digest" in text.stdout
    assert show_text.returncode == 0
    for out in (listed_out, shown_out, text, show_text):
        assert "HOOKSECRET" not in out.stdout and WHSEC not in out.stdout and "TOPSECRET" not in out.stdout

    assert missing.returncode == 2 and "no subscriber named 'nobody'" in missing.stderr
    assert bad_param.returncode == 2 and "--param" in bad_param.stderr
    assert bad_email.returncode == 2 and "email" in bad_email.stderr

    removed = cli("subscribers", "remove", "ifu", *c)
    assert removed.returncode == 0 and "removed" in removed.stdout
    again, after = cli_parallel(("subscribers", "remove", "ifu", *c), ("subscribers", "list", "--json", *c))
    assert again.returncode == 2 and "no subscriber named 'ifu'" in again.stderr
    assert [s["name"] for s in json.loads(after.stdout)] == ["from-config"]


# -- outbox ----------------------------------------------------------------------------------------


def test_outbox_counts_rows_status_filter_and_requeue(
    tmp_path: Path, replay: ReplayServer, http_sink: HttpSink,  # noqa: F811
) -> None:
    subscribers = f"""
[[subscribers]]
name = "hook-ok"
webhook_url = "{http_sink.url_for('/ok')}"
webhook_secret = "{WHSEC}"
[[subscribers]]
name = "hook-bad"
webhook_url = "{http_sink.url_for('/bad')}"
webhook_secret = "{WHSEC}"
[[subscribers]]
name = "daily"
webhook_url = "{http_sink.url_for('/daily')}"
webhook_secret = "{WHSEC}"
digest = "daily"
"""
    route(http_sink, {"/bad": ScriptedResponse(400, {}, b"no such hook")})
    config = write_config(tmp_path, server_url=replay.url, subscribers=subscribers)
    contexts = populate(config, replay, 2)
    c = ("--config", str(config))

    all_out, dead_out, one_out, text, not_dead, bogus = cli_parallel(
        ("outbox", "--json", *c), ("outbox", "--status", "dead", "--json", *c),
        ("outbox", "--limit", "1", "--json", *c), ("outbox", *c), ("outbox", "--requeue", "1", *c),
        ("outbox", "--status", "stuck", *c))
    data = json.loads(all_out.stdout)
    assert data["counts"] == {"pending": 2, "leased": 0, "sent": 2, "dead": 2}
    rows = data["rows"]
    assert len(rows) == 6 and [r["id"] for r in rows] == sorted((r["id"] for r in rows), reverse=True)
    assert {(r["subscriber"], r["status"]) for r in rows} == {
        ("hook-ok", "sent"), ("hook-bad", "dead"), ("daily", "pending")}
    assert {r["context"] for r in rows} == set(contexts)
    assert all("payload" not in r for r in rows)
    sent = next(r for r in rows if r["status"] == "sent")
    assert sent["sent_at"].startswith("2026-11-24T12:00:00") and sent["attempts"] == 1

    dead = json.loads(dead_out.stdout)["rows"]
    assert len(dead) == 2 and all("HTTP 400" in r["last_error"] and "no such hook" in r["last_error"] for r in dead)
    assert len(json.loads(one_out.stdout)["rows"]) == 1
    assert text.returncode == 0 and "pending: 2  leased: 0  sent: 2  dead: 2" in text.stdout
    assert "error: PermanentDeliveryError [400]: webhook" in text.stdout  # the HTTP status kept with the reason

    requeued = cli("outbox", "--requeue", str(dead[0]["id"]), *c)
    assert requeued.returncode == 0 and f"delivery {dead[0]['id']} requeued" in requeued.stdout
    after = ok_json("outbox", "--status", "pending", *c)
    pending = {r["id"]: r for r in after["rows"]}
    assert pending[dead[0]["id"]]["attempts"] == 0 and "HTTP 400" in pending[dead[0]["id"]]["last_error"]
    assert after["counts"] == {"pending": 3, "leased": 0, "sent": 2, "dead": 1}

    assert not_dead.returncode == 2 and "delivery 1 is not dead" in not_dead.stderr
    assert bogus.returncode == 2 and "--status 'stuck'" in bogus.stderr


# -- preview ---------------------------------------------------------------------------------------


def test_preview_every_format_names_every_selected_file(
    tmp_path: Path, replay: ReplayServer, http_sink: HttpSink,  # noqa: F811
) -> None:
    subscribers = f"""
[[subscribers]]
name = "nirspec-team"
webhook_url = "{http_sink.url_for('/hook')}"
webhook_secret = "{WHSEC}"
instruments = ["nirspec"]
"""
    config = write_config(tmp_path, server_url=replay.url, subscribers=subscribers)
    miri, nirspec = populate(config, replay, 2)  # jwst_0501 changes MIRI files, jwst_0502 NIRSpec's
    c = ("--config", str(config))
    from crdswatch.store import Store

    with Store.open(f"sqlite:///{tmp_path}/state.db") as store:
        diff = next(a.diff for a in store.list_activations() if a.context == nirspec)
    assert diff is not None
    files = {ch["new_file"] for ch in diff["changes"]
             if ch["instrument"] == "nirspec" and ch["level"] == "reference" and ch["new_file"]}
    files = {f for f in files if f.endswith(".fits")}
    assert files

    formats = ("text", "html", "slack", "json")
    runs = cli_parallel(
        *[("preview", "--subscriber", "nirspec-team", "--activation", nirspec, "--format", f, *c) for f in formats],
        ("preview", "--subscriber", "nirspec-team", "--activation", miri, *c),
        ("preview", "--subscriber", "nirspec-team", "--activation", "jwst_9999.pmap", *c),
        ("preview", "--subscriber", "nirspec-team", "--activation", "jwst_0500.pmap", *c),
        ("preview", "--subscriber", "nobody", "--activation", nirspec, *c),
        ("preview", "--subscriber", "nirspec-team", "--activation", nirspec, "--format", "pdf", *c),
    )
    outputs = {}
    for fmt, out in zip(formats, runs):
        assert out.returncode == 0, out.stderr
        assert nirspec in out.stdout
        missing = {f for f in files if f not in out.stdout}
        assert not missing, (fmt, missing)
        outputs[fmt] = out.stdout
    assert outputs["text"].startswith("Subject: [CRDS JWST] " + nirspec)
    assert "<html" in outputs["html"].lower()
    assert isinstance(json.loads(outputs["slack"]), list)
    hook = json.loads(outputs["json"])
    assert hook["activations"][0]["context"] == nirspec
    # what preview shows is what the webhook received
    sent = [r.json() for r in http_sink.requests if r.path == "/hook"]
    assert len(sent) == 1 and sent[0]["activations"][0]["context"] == nirspec
    assert {ch["new_file"] for ch in sent[0]["activations"][0]["changes"]} >= files

    nothing, unknown, baseline, nobody, badfmt = runs[len(formats):]
    assert nothing.returncode == 1 and "select nothing" in nothing.stderr and nothing.stdout == ""
    assert unknown.returncode == 2 and "jwst_9999.pmap" in unknown.stderr
    assert baseline.returncode == 2  # the silent baseline is not an activation anyone was told about
    assert nobody.returncode == 2 and "nobody" in nobody.stderr
    assert badfmt.returncode == 2 and "--format" in badfmt.stderr


# -- send-test -------------------------------------------------------------------------------------


def test_send_test_reaches_every_channel_now(
    tmp_path: Path, replay: ReplayServer, smtp_server: SmtpTestServer, http_sink: HttpSink,  # noqa: F811
) -> None:
    subscribers = f"""
[[subscribers]]
name = "someone"
email = ["someone@example.org"]
webhook_url = "{http_sink.url_for('/hook')}"
webhook_secret = "{WHSEC}"
"""
    config = write_config(tmp_path, server_url=replay.url, smtp=smtp_server, subscribers=subscribers)
    out = cli("send-test", "--subscriber", "someone", "--config", str(config))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "ok    email:someone@example.org" in out.stdout and "ok    webhook" in out.stdout
    assert len(smtp_server.messages) == 1
    msg = smtp_server.messages[0]
    assert msg.rcpt_tos == ("someone@example.org",) and msg.login == "crdswatch"
    parsed = msg.parsed()
    assert parsed["Subject"].startswith("[crdswatch TEST]")
    body = parsed.get_body(preferencelist=("plain",)).get_content().replace("\r\n", "\n")
    assert body.startswith("!" * 78 + "\n!! TEST NOTICE")
    hook = json.loads(http_sink.requests[0].body)
    assert hook["test"] is True and hook["subscriber"] == "someone"
    assert [r.path for r in http_sink.requests] == ["/hook"]

    smtp_server.reject_address("someone@example.org", 550)
    failed = cli("send-test", "--subscriber", "someone", "--config", str(config))
    assert failed.returncode == 1 and "FAIL  email:someone@example.org" in failed.stdout
    assert "550" in failed.stdout and len(smtp_server.messages) == 1
    nobody = cli("send-test", "--subscriber", "nobody", "--config", str(config))
    assert nobody.returncode == 2


# -- check-config ----------------------------------------------------------------------------------


def test_check_config_good_unreachable_and_bad(
    tmp_path: Path, replay: ReplayServer, smtp_server: SmtpTestServer,  # noqa: F811
) -> None:
    subscribers = f"""
[[subscribers]]
name = "chat"
slack_webhook = "{SLACK}"
"""
    # a server behind a proxy that wants credentials in the URL: those are secrets too
    server_url = replay.url.replace("http://", "http://crdsuser:PROXYPASS@")
    config = write_config(tmp_path, server_url=server_url, smtp=smtp_server, subscribers=subscribers,
                          extra='[alerts]\nadmin_email = ["ops@example.org"]')
    config.write_text(config.read_text().replace("[http]\n", '[http]\nunsubscribe_secret = "UNSUBSECRET"\n'))
    secrets = ("correct horse", "TOPSECRETTOKEN", "UNSUBSECRET", "PROXYPASS")
    masked_url = replay.url.replace("http://", "http://crdsuser:********@")

    good = cli("check-config", "--config", str(config))
    assert good.returncode == 0, good.stdout + good.stderr
    assert f"ok    {masked_url} jwst latest: jwst_0500.pmap" in good.stdout
    assert "ok    smtp 127.0.0.1" in good.stdout and "authenticated" in good.stdout
    report = ok_json("check-config", "--config", str(config))
    assert report["ok"] is True and len([c for c in report["checks"] if c["check"] != "names"]) == 2
    assert report["config"]["smtp"]["password"] == "********"
    for out in (good.stdout + good.stderr, json.dumps(report)):
        assert not any(s in out for s in secrets)
    assert smtp_server.messages == []  # nothing is sent

    wrong = tmp_path / "wrong-password.toml"
    wrong.write_text(config.read_text().replace('password = "correct horse"', 'password = "nope"'))
    failed = cli("check-config", "--config", str(wrong))
    assert failed.returncode == 1 and "FAIL  smtp" in failed.stdout and "535" in failed.stdout
    assert "nope" not in failed.stdout

    no_password = tmp_path / "no-password.toml"
    no_password.write_text(config.read_text().replace('password = "correct horse"\n', ""))
    down = tmp_path / "down.toml"
    down.write_text(config.read_text().replace(replay.url.split("//")[1], f"127.0.0.1:{free_port()}"))
    missing, unreachable, offline = cli_parallel(
        ("check-config", "--config", str(no_password)), ("check-config", "--config", str(down)),
        ("check-config", "--offline", "--config", str(down)))
    assert missing.returncode == 1 and "FAIL  smtp" in missing.stdout and "no password" in missing.stdout
    assert unreachable.returncode == 1 and "FAIL  http://crdsuser:********@127.0.0.1:" in unreachable.stdout
    assert "PROXYPASS" not in unreachable.stdout + unreachable.stderr
    assert offline.returncode == 0 and "PROXYPASS" not in offline.stdout

    bad = tmp_path / "bad.toml"
    bad.write_text(config.read_text().replace("poll_interval = 60", "poll_interval = 0")
                   .replace(SLACK, "ftp://hooks.slack.com/TOPSECRETTOKEN"))
    invalid = cli("check-config", "--config", str(bad))
    assert invalid.returncode == 2
    assert "sources[0].poll_interval" in invalid.stderr and "subscribers[0] (chat).slack_webhook" in invalid.stderr
    assert not any(s in invalid.stdout + invalid.stderr for s in secrets)
    assert cli("check-config", "--config", str(tmp_path / "absent.toml")).returncode == 2


# -- demo ------------------------------------------------------------------------------------------


def test_demo_leaves_a_mailbox_and_a_feed(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    run = cli("demo", "--count", "3", "--out", str(out), timeout=120)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert "3 activations processed" in run.stdout
    mails = list((out / "Maildir" / "new").iterdir())
    assert mails
    feed = feedparser.parse(BytesIO((out / "feed.atom").read_bytes()))
    assert feed.bozo == 0 and len(feed.entries) == 3
    assert (out / "crdswatch.toml").exists()
    # the outbox of the demo is readable with the config it wrote
    data = ok_json("outbox", "--config", str(out / "crdswatch.toml"))
    assert data["counts"]["dead"] == 0 and data["counts"]["sent"] == len(mails)
