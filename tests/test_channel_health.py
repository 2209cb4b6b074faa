"""Issue 9: a delivery peer that fails every send is told to the operator long before its rows
die. The real daemon with channel_stale_after = 2, a webhook subscriber whose receiver answers
503 to everything and an e-mail subscriber whose mail goes through: after an activation /healthz
turns 503 naming the webhook channel (not e-mail), the status JSON and the metric say so, one
admin alert arrives; when the receiver recovers, /healthz is ok again, no second alert came,
every row is sent and the process's peak RSS stayed under the issue's 300 MB.

Ordering, not timing: every wait is a poll with a generous overall timeout.
"""

from __future__ import annotations

import json
import signal
import urllib.error
import urllib.request
from pathlib import Path

from crdswatch.devtools.replay import ReplayServer
from crdswatch.store import Store
from tests.support.daemon_env import free_port, smtp_table, spawn_daemon, wait_for
from tests.support.fixtures_channels import http_sink, smtp_pki, smtp_server  # noqa: F401
from tests.support.http_sink import HttpSink, ScriptedResponse
from tests.support.smtp_server import SmtpTestServer
from tests.test_daemon_hostile import RSS_BOUND_MB, peak_rss_mb

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
TOKEN = "T0kenInThePath9f3a"  # the webhook URL is a secret: never in /healthz or an alert


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_a_failing_webhook_turns_healthz_503_and_alerts_once_until_it_recovers(
    tmp_path: Path, replay: ReplayServer, http_sink: HttpSink, smtp_server: SmtpTestServer,  # noqa: F811
) -> None:
    path = f"/hook/{TOKEN}"
    http_sink.route(path, ScriptedResponse(503, {"Content-Type": "text/plain"}, f"Service Unavailable: {path}"))
    port = free_port()
    config = tmp_path / "crdswatch.toml"
    config.write_text(f"""
[state]
database = "sqlite:///{tmp_path}/state.db"
[[sources]]
observatory = "jwst"
server_url = "{replay.url}"
poll_interval = 1
{smtp_table(smtp_server, sender="crdswatch <crds@example.org>")}[http]
listen = "127.0.0.1:{port}"
[alerts]
admin_email = ["ops@example.org"]
[outbox]
drain_interval = 0.2
backoff_base = 0.5
backoff_max = 1
max_attempts = 1000
[limits]
channel_stale_after = 2

[[subscribers]]
name = "team"
email = ["team@example.org"]

[[subscribers]]
name = "hook"
webhook_url = "{http_sink.url_for(path)}"
webhook_secret = "{SECRET}"
""")
    log = tmp_path / "log"
    proc = spawn_daemon(config, cache=tmp_path / "cache", log=log)
    store = Store.open(f"sqlite:///{tmp_path}/state.db")

    def alerts() -> list[str]:
        return [str(m.parsed().get_content()) for m in smtp_server.messages
                if "[crdswatch] alert: channel-stale" in str(m.parsed()["Subject"])]

    def healthz() -> tuple[int, str]:
        try:
            return get(port, "/healthz")
        except OSError:
            return 0, ""

    try:
        wait_for(lambda: healthz()[0] == 200, "a healthy daemon", timeout=120)
        context = str(replay.activate_next()["context"])  # type: ignore[index]
        wait_for(lambda: any(m.rcpt_tos == ("team@example.org",) and context in str(m.parsed()["Subject"])
                             for m in smtp_server.messages), "the notice e-mail", timeout=120)
        wait_for(lambda: healthz()[0] == 503, "/healthz 503", timeout=120)
        status, why = healthz()
        assert status == 503, why
        assert why.startswith("webhook channel:"), why
        assert "no successful send for" in why and "last success: never" in why, why
        assert "503" in why, why  # the last error
        assert "email" not in why and TOKEN not in why, why

        _code, body = get(port, "/healthz?format=json")
        channels = json.loads(body)["bounds"]["channels"]
        assert channels["webhook"]["stale"] and channels["webhook"]["rows_waiting"] >= 1, channels
        assert TOKEN not in channels["webhook"]["last_error"], channels
        assert not channels["email"]["stale"] and channels["email"]["last_success"], channels
        api = json.loads(get(port, "/api/status")[1])
        assert api["healthy"] is False and api["bounds"]["channels"]["webhook"]["stale"], api
        metrics = get(port, "/metrics")[1]
        unsent = [line for line in metrics.splitlines() if line.startswith('crdswatch_channel_unsent_seconds{channel="webhook"}')]
        assert unsent and float(unsent[0].split()[-1]) > 0, metrics

        wait_for(lambda: len(alerts()) >= 1, "the channel-stale alert e-mail", timeout=120)
        text = alerts()[0]
        assert "webhook channel:" in text and TOKEN not in text, text
        rows = [r for r in store.outbox_rows(limit=100) if r.subscriber == "hook"]
        assert rows and all(r.status in ("pending", "leased") for r in rows), rows
        # several more failed retries go by without a second alert
        attempts = max(r.attempts for r in rows)
        wait_for(lambda: max(r.attempts for r in store.outbox_rows(limit=100) if r.subscriber == "hook")
                 >= attempts + 3, "more failed retries", timeout=120)
        assert len(alerts()) == 1, alerts()
        assert healthz()[0] == 503

        http_sink.route(path, ScriptedResponse(200, {"Content-Type": "text/plain"}, b"ok"))  # the receiver recovers
        wait_for(lambda: healthz()[0] == 200, "/healthz ok again", timeout=120)
        assert healthz() == (200, "ok\n")
        wait_for(lambda: all(r.status == "sent" for r in store.outbox_rows(limit=100)), "every row sent", timeout=120)
        _code, body = get(port, "/healthz?format=json")
        webhook = json.loads(body)["bounds"]["channels"]["webhook"]
        assert not webhook["stale"] and webhook["last_success"] and not webhook["alerted"], webhook
        assert len(alerts()) == 1, alerts()
        assert peak_rss_mb(proc.pid) < RSS_BOUND_MB
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(60)
        store.close()
    text = log.read_text()
    assert code == 0, text[-2000:]
    assert "channel stale" in text and "channel recovered" in text, text[-3000:]
    assert TOKEN not in text.split("channel stale", 1)[1].split("\n", 1)[0]  # the log line is scrubbed too


def test_a_channel_is_stale_only_while_rows_wait_without_a_success() -> None:
    from crdswatch.app.delivery_events import ChannelHealth

    now = [1000.0]
    health = ChannelHealth(clock=lambda: now[0])
    health.failed("webhook", 1, "webhook https://h.example/hook/abcdefgh: HTTP 503", dead=False)
    now[0] += 10
    [(kind, age, state)] = health.stale(now[0], 5)
    assert (kind, age, state.waiting) == ("webhook", 10, {1})
    assert "abcdefgh" not in health.reason(kind, age, 5) and "last success: never" in health.reason(kind, age, 5)
    health.failed("webhook", 1, "HTTP 503", dead=True)  # its only row died: nothing waits, not stale
    assert health.stale(now[0] + 100, 5) == []
    health.failed("webhook", 2, "HTTP 503", dead=False)  # a new episode starts at its first failure
    assert health.stale(now[0] + 5, 5) == [] and len(health.stale(now[0] + 6, 5)) == 1
    health.sent("webhook")  # a success ends it
    assert health.stale(now[0] + 100, 5) == []
    assert health.status(now[0], 5)["webhook"]["last_success"] is not None
