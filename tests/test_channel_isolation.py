"""One slow receiver delays only its own queue: the real daemon with a webhook subscriber whose
receiver trickles its reply (held open by the test) and several e-mail subscribers.

Ordering, not timing: the webhook's reply cannot finish before the test releases it, and the
test releases it only after every e-mail of two activations has arrived. If the e-mails (or the
second activation's poll) waited for the webhook, they would never arrive and the test would
fail on its bounded wait.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path

from crdswatch.devtools.replay import ReplayServer
from crdswatch.store import Store
from tests.support.daemon_env import free_port, smtp_table, spawn_daemon, wait_for
from tests.support.fixtures_channels import http_sink, smtp_pki, smtp_server  # noqa: F401
from tests.support.http_sink import HttpSink, ScriptedResponse
from tests.support.smtp_server import SmtpTestServer

MAILBOXES = 4
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def test_a_trickling_webhook_delays_only_its_own_queue(
    tmp_path: Path, replay: ReplayServer, http_sink: HttpSink, smtp_server: SmtpTestServer,  # noqa: F811
) -> None:
    hold = threading.Event()
    http_sink.route("/hook", ScriptedResponse(200, {"Content-Type": "text/plain"}, b"ok", trickle=1.0, hold=hold))
    subs = "".join(f'\n[[subscribers]]\nname = "mail{i}"\nemail = ["mail{i}@example.org"]\n' for i in range(MAILBOXES))
    subs += f'\n[[subscribers]]\nname = "hook"\nwebhook_url = "{http_sink.url_for("/hook")}"\nwebhook_secret = "{SECRET}"\n'
    config = tmp_path / "crdswatch.toml"
    config.write_text(f"""
[state]
database = "sqlite:///{tmp_path}/state.db"
[[sources]]
observatory = "jwst"
server_url = "{replay.url}"
poll_interval = 1
{smtp_table(smtp_server, sender="crdswatch <crds@example.org>")}[http]
listen = "127.0.0.1:{free_port()}"
[outbox]
drain_interval = 0.2
[limits]
send_deadline = 600
{subs}""")
    log = tmp_path / "log"
    proc = spawn_daemon(config, cache=tmp_path / "cache", log=log)
    store = Store.open(f"sqlite:///{tmp_path}/state.db")

    def mails(context: str) -> int:
        return sum(1 for m in smtp_server.messages if context in str(m.parsed()["Subject"]))

    def hook_rows() -> list[str]:
        return [r.status for r in sorted(store.outbox_rows(limit=100), key=lambda r: r.id) if r.subscriber == "hook"]

    try:
        wait_for(lambda: store.get_cursor(f"{replay.url}|jwst|latest") is not None, "the baseline")
        first = str(replay.activate_next()["context"])  # type: ignore[index]
        wait_for(lambda: ("request", "/hook") in http_sink.events, "the webhook send to start")
        # the same drain cycle: the e-mails go out while the webhook's reply is still trickling
        wait_for(lambda: mails(first) == MAILBOXES, "the first activation's e-mails")
        # a poll is not held up by the drain: the next activation is seen and mailed too
        second = str(replay.activate_next()["context"])  # type: ignore[index]
        wait_for(lambda: mails(second) == MAILBOXES, "the second activation's e-mails")
        assert ("answered", "/hook") not in http_sink.events  # the webhook send is still in progress
        assert hook_rows() == ["leased", "leased"]  # its first row mid-send, the second queued behind it
        assert [p for kind, p in http_sink.events if kind == "request"] == ["/hook"]  # in order, one at a time

        hold.set()  # the receiver finishes: the webhook queue goes on, in activation order
        wait_for(lambda: hook_rows() == ["sent", "sent"], "the webhook rows")
        bodies = [r.json() for r in http_sink.requests]
        assert [b["activations"][0]["context"] for b in bodies] == [first, second]
    finally:
        hold.set()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(60)
        store.close()
    text = log.read_text()
    assert code == 0, text[-2000:]
    assert "skipped" not in text  # no scheduler job ran into a drain still busy with the webhook
    assert len(smtp_server.messages) == 2 * MAILBOXES
