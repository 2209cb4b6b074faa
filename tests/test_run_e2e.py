"""`crdswatch run` end to end, as a real process: replay CRDS server -> daemon -> SMTP (STARTTLS+AUTH),
Slack and webhook receivers; health and metrics; SIGTERM exits cleanly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

from standardwebhooks import Webhook

from crdswatch.contexts.diff import diff_contexts
from crdswatch.contexts.library import MappingLibrary
from crdswatch.devtools.replay import ReplayServer
from tests.support.daemon_env import free_port, wait_for
from tests.support.fixtures_channels import http_sink, smtp_pki, smtp_server  # noqa: F401
from tests.support.http_sink import HttpSink
from tests.support.smtp_server import SmtpTestServer

SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except OSError:
        return 0, ""


def write_config(tmp: Path, replay: ReplayServer, smtp: SmtpTestServer, sink: HttpSink, http_port: int) -> Path:
    config = tmp / "crdswatch.toml"
    config.write_text(f"""
[state]
database = "sqlite:///{tmp}/state.db"

[[sources]]
observatory = "jwst"
server_url = "{replay.url}"
poll_interval = 1
timeout = 10

[smtp]
host = "127.0.0.1"
port = {smtp.port}
security = "starttls"
username = "crdswatch"
sender = "CRDS notices <crds@example.org>"
ca_file = "{smtp.pki.ca_file}"

[http]
listen = "127.0.0.1:{http_port}"
public_url = "https://crdswatch.example.org"

[outbox]
drain_interval = 0.5
backoff_base = 1
backoff_max = 2

[[subscribers]]
name = "nirspec-team"
email = ["nirspec@example.org"]
instruments = ["nirspec"]

[[subscribers]]
name = "miri-slack"
slack_webhook = "{sink.url_for('/slack')}"
instruments = ["miri"]

[[subscribers]]
name = "pipeline"
webhook_url = "{sink.url_for('/hook')}"
webhook_secret = "{SECRET}"
""")
    return config


def test_run_end_to_end(
    tmp_path: Path, replay: ReplayServer, smtp_server: SmtpTestServer, http_sink: HttpSink,  # noqa: F811
    jwst_mappings: Path,
) -> None:
    http_port = free_port()
    config = write_config(tmp_path, replay, smtp_server, http_sink, http_port)
    env = {**os.environ, "CRDSWATCH_SMTP__PASSWORD": "correct horse", "CRDSWATCH_CACHE": str(tmp_path / "cache")}
    log = (tmp_path / "daemon.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "crdswatch", "run", "--config", str(config), "--log-format", "json"],
                            stdout=log, stderr=subprocess.STDOUT, env=env)
    base = f"http://127.0.0.1:{http_port}"
    try:
        wait_for(lambda: get(f"{base}/healthz")[0] == 200, "a healthy daemon")
        contexts = [replay.activate_next()["context"] for _ in range(3)]  # type: ignore[index]
        library = MappingLibrary.from_dir(jwst_mappings)
        diffs = dict(zip(contexts, [diff_contexts(p, c, library) for p, c in
                                    zip(["jwst_0500.pmap", *contexts[:-1]], contexts)]))
        nirspec = [c for c in contexts if any(ch.instrument == "nirspec" for ch in diffs[c].changes)]
        miri = [c for c in contexts if any(ch.instrument == "miri" for ch in diffs[c].changes)]
        wait_for(lambda: len([r for r in http_sink.requests if r.path == "/hook"]) == 3, "three webhook calls")
        wait_for(lambda: len(smtp_server.messages) == len(nirspec), "the NIRSpec e-mails")
        assert nirspec and miri  # the stretch replayed exercises both subscribers

        def slack_texts() -> list[str]:
            return [json.dumps(r.json()) for r in http_sink.requests if r.path == "/slack"]

        wait_for(lambda: all(any(c in t for t in slack_texts()) for c in miri), "the MIRI Slack posts")
        assert all(any(c in t for c in miri) for t in slack_texts())  # nothing but MIRI activations

        # E-mail: one per NIRSpec activation, every NIRSpec file of its diff named, nothing else
        for msg in (m.parsed() for m in smtp_server.messages):
            context = next(c for c in nirspec if c in msg["Subject"])
            text = msg.get_body(preferencelist=("plain",)).get_content()
            files = {ch.new_file or ch.old_file for ch in diffs[context].changes
                     if ch.level == "reference" and ch.instrument == "nirspec"}
            assert all(f in text for f in files if f and f != "N/A")
            other = {ch.new_file for ch in diffs[context].changes if ch.instrument != "nirspec" and ch.new_file}
            assert not any(f in text for f in other if f.endswith(".fits"))
            assert msg["Message-ID"].startswith("<crdswatch.") and msg["Auto-Submitted"] == "auto-generated"
            assert msg["List-Id"] and msg.get_content_type() == "multipart/alternative"
        assert all(m.login == "crdswatch" for m in smtp_server.messages)

        # Webhook: signed per Standard Webhooks, one per activation, in order
        hooks = [r for r in http_sink.requests if r.path == "/hook"]
        for r in hooks:
            Webhook(SECRET).verify(r.body, {k: v for k, v in r.headers.items() if k.startswith("webhook-")})
        got = [r.json()["activations"][0]["context"] for r in hooks]
        assert got == contexts

        # The receiver sees a request before the daemon has recorded it as sent: wait for the count.
        sent = 'crdswatch_notices_total{channel="webhook",outcome="sent"} 3.0'
        wait_for(lambda: sent in get(f"{base}/metrics")[1], "the metrics to count the sends", timeout=15)
        status, metrics = get(f"{base}/metrics")
        assert status == 200
        assert 'crdswatch_activations_total{source=' in metrics and " 3.0" in metrics
        assert 'crdswatch_notices_total{channel="webhook",outcome="sent"} 3.0' in metrics
        assert "crdswatch_last_successful_poll_timestamp_seconds" in metrics
        status, feed = get(f"{base}/feed.atom")
        assert status == 200 and all(c in feed for c in contexts)
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
        log.close()
    lines = (tmp_path / "daemon.log").read_text().splitlines()
    events = [json.loads(line).get("event") for line in lines if line.startswith("{")]
    assert code == 0, lines[-20:]
    assert "stopping" in events and "stopped" in events
