"""Issue 9: secrets never leave through an output. A token in a webhook_url and in a Slack webhook
URL, and `user:password@` in a CRDS server_url, must not appear in `crdswatch outbox` (text and
--json), the daemon's log (text and json), the admin alert e-mails (raw bytes at the SMTP sink),
/healthz and /api/status JSON, or `check-config` output — even when a receiver echoes the URL it
was called at in its error page (as many do: "Cannot POST /hook/<token>")."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from crdswatch.devtools.replay import ReplayServer
from tests.support.daemon_env import SMTP_PASSWORD, cli, free_port, wait_for
from tests.support.fixtures_channels import smtp_pki, smtp_server  # noqa: F401
from tests.support.smtp_server import SmtpTestServer

WEBHOOK_TOKEN = "WhTok3nQ9zX1"
SLACK_TOKEN = "SlAckT0kenP7w"
PROXY_PASSWORD = "Pr0xyPaSs4u"
SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SECRETS = (WEBHOOK_TOKEN, SLACK_TOKEN, PROXY_PASSWORD, SMTP_PASSWORD, SECRET.removeprefix("whsec_"))


class _Echo(BaseHTTPRequestHandler):
    """A receiver that refuses every call with an error page naming the URL it was called at."""

    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length") or 0))
        status = 500 if "/services/" in self.path else 404
        body = f"Cannot POST {self.path} (http://{self.headers.get('host')}{self.path})".encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def echo() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _config(tmp: Path, replay: ReplayServer, smtp: SmtpTestServer, echo: str, http_port: int) -> Path:
    with_password = replay.url.replace("http://", f"http://crdsuser:{PROXY_PASSWORD}@")
    dead = f"http://crdsuser:{PROXY_PASSWORD}@127.0.0.1:{free_port()}"
    config = tmp / "crdswatch.toml"
    config.write_text(f"""
[state]
database = "sqlite:///{tmp}/state.db"

[[sources]]
observatory = "jwst"
server_url = "{with_password}"
poll_interval = 1
timeout = 5

[[sources]]
observatory = "hst"
server_url = "{dead}"
poll_interval = 1
timeout = 2
alert_after = 1

[smtp]
host = "127.0.0.1"
port = {smtp.port}
security = "starttls"
username = "crdswatch"
sender = "CRDS notices <crds@example.org>"
ca_file = "{smtp.pki.ca_file}"

[alerts]
admin_email = ["ops@example.org"]

[http]
listen = "127.0.0.1:{http_port}"
public_url = "https://crdswatch.example.org"

[outbox]
drain_interval = 0.5
max_attempts = 1

[[subscribers]]
name = "pipeline"
webhook_url = "{echo}/hook/{WEBHOOK_TOKEN}?token={WEBHOOK_TOKEN}"
webhook_secret = "{SECRET}"

[[subscribers]]
name = "chat"
slack_webhook = "{echo}/services/T000/B000/{SLACK_TOKEN}"
""")
    return config


def _get(url: str) -> str:
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=5) as r:
            return str(r.read().decode())
    except urllib.error.HTTPError as e:
        return str(e.read().decode())
    except OSError:
        return ""


def _leaks(text: str) -> list[str]:
    return [s for s in SECRETS if s in text]


@pytest.mark.parametrize("fmt", ["console", "json"])
def test_no_output_shows_a_secret(
    tmp_path: Path, replay: ReplayServer, smtp_server: SmtpTestServer, echo: str, fmt: str,  # noqa: F811
) -> None:
    http_port = free_port()
    config = _config(tmp_path, replay, smtp_server, echo, http_port)
    env = {**os.environ, "CRDSWATCH_SMTP__PASSWORD": SMTP_PASSWORD, "CRDSWATCH_CACHE": str(tmp_path / "cache")}
    log_file = tmp_path / "daemon.log"
    base = f"http://127.0.0.1:{http_port}"
    with log_file.open("wb") as sink:
        proc = subprocess.Popen([sys.executable, "-m", "crdswatch", "run", "--config", str(config),
                                 "--log-format", fmt], stdout=sink, stderr=subprocess.STDOUT, env=env)
        try:
            wait_for(lambda: "jwst_0500.pmap" in log_file.read_text(), "the jwst baseline")
            replay.inject_fault("http500", count=1)  # a retry warning naming the server's URL
            replay.activate_next()
            wait_for(lambda: "dead: 2" in _counts(config, env),
                     "both deliveries dead")
            wait_for(lambda: len(smtp_server.messages) >= 2, "the source and dead-delivery alerts")
            outputs = {"healthz": _get(f"{base}/healthz?format=json"), "api/status": _get(f"{base}/api/status")}
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
    assert json.loads(outputs["healthz"]) and json.loads(outputs["api/status"])  # real JSON answers
    assert "hst" in outputs["healthz"] and "127.0.0.1" in outputs["api/status"]  # the failing source shown
    outputs["log"] = log_file.read_text()
    assert "retry" in outputs["log"] and "Cannot POST" in outputs["log"]  # the errors are there, scrubbed
    for i, message in enumerate(smtp_server.messages):
        outputs[f"alert e-mail {i} (raw)"] = message.data.decode("utf-8", "replace")
    assert any("dead" in m.data.decode() for m in smtp_server.messages)
    for args in (("outbox",), ("outbox", "--json"), ("outbox", "--status", "dead"), ("check-config",),
                 ("check-config", "--json"), ("check-config", "--offline"), ("subscribers", "list", "--json"),
                 ("subscribers", "show", "pipeline")):
        done = cli(*args, "--config", str(config), env=env)
        outputs[" ".join(args)] = done.stdout + done.stderr
    assert "Cannot POST" in outputs["outbox"]  # the receiver's error page is kept, its secrets are not
    leaks = {where: _leaks(text) for where, text in outputs.items() if _leaks(text)}
    assert not leaks, leaks


def _counts(config: Path, env: dict[str, str]) -> str:
    return cli("outbox", "--config", str(config), "--limit", "0", env=env).stdout


# -- rows written before errors were scrubbed at the source -------------------------------------------

OLD_TOKEN = "SECRETt0kenOld9"
OLD_HOOK = f"https://hooks.example.org/T000/{OLD_TOKEN}"


def test_outbox_scrubs_error_texts_of_rows_stored_before_the_fix(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A row's last_error as an older crdswatch stored it: the subscriber's webhook URL whole, the
    receiver's echo of its path, a URL of a subscriber since removed, and a user:password@ URL.
    `crdswatch outbox` (text, --json through the fast path and through the full command) masks
    them all and keeps the rest of the message."""
    from datetime import UTC, datetime

    import sqlalchemy

    from crdswatch.cli import ops
    from crdswatch.errors import PermanentDeliveryError
    from crdswatch.model import Activation
    from crdswatch.store import NewDelivery, Outcome, Store

    db = tmp_path / "state.db"
    config = tmp_path / "c.toml"
    config.write_text(f'[state]\ndatabase = "sqlite:///{db}"\n\n[[subscribers]]\nname = "pipeline"\n'
                      f'webhook_url = "{OLD_HOOK}"\nwebhook_secret = "{SECRET}"\n')
    now = datetime(2026, 3, 1, 12, tzinfo=UTC)
    with Store.open(f"sqlite:///{db}") as store:
        rows = [NewDelivery("pipeline", "webhook", {"sel": [0]}), NewDelivery("gone", "webhook", {"sel": [0]})]
        store.record_activation("k|jwst|latest", Activation("2026-03-01T11:00:00+00:00", "jwst_0541.pmap"),
                                "jwst_0540.pmap", {"changes": []}, rows, None, now=now)
        claimed = store.claim("w1", now, 60, 2)
        store.record_outcomes([Outcome(r.id, PermanentDeliveryError("HTTP 404")) for r in claimed], "w1", now)
    old = (f"webhook {OLD_HOOK}: HTTP 404: Cannot POST /T000/{OLD_TOKEN} via "
           f"http://crdsuser:{PROXY_PASSWORD}@proxy.example.org:3128")
    gone = f"webhook https://hooks.example.org/T111/{WEBHOOK_TOKEN}: HTTP 410: gone"
    engine = sqlalchemy.create_engine(f"sqlite:///{db}")
    with engine.begin() as conn:
        conn.execute(sqlalchemy.text("UPDATE deliveries SET last_error = :e WHERE subscriber = 'pipeline'"), {"e": old})
        conn.execute(sqlalchemy.text("UPDATE deliveries SET last_error = :e WHERE subscriber = 'gone'"), {"e": gone})
    engine.dispose()

    secrets = (OLD_TOKEN, PROXY_PASSWORD, WEBHOOK_TOKEN)
    monkeypatch.setattr(sys.stdout, "isatty", lambda: False)
    ops.outbox(config=config, status=None, limit=50, requeue=None, as_json=True)
    outputs = {"full --json": capsys.readouterr().out}
    for args in (("outbox",), ("outbox", "--json")):  # --json alone: cli.fast
        done = cli(*args, "--config", str(config))
        assert done.returncode == 0, done.stderr
        outputs[" ".join(args)] = done.stdout
    assert outputs["outbox --json"] == outputs["full --json"]
    for where, text in outputs.items():
        assert [s for s in secrets if s in text] == [], (where, text)
        assert "HTTP 404: Cannot POST" in text and "proxy.example.org:3128" in text and "HTTP 410: gone" in text, where
        assert "https://hooks.example.org" in text, where  # who answered stays
