"""SIGKILL the real daemon between the cursor commit and delivery, and in the middle of a fan-out:
after a restart every notice is delivered, each outbox row is sent exactly once, and the only
possible duplicate (a message the server took but the daemon never heard acknowledged) carries the
same Message-ID, so receivers can drop it."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from crdswatch.devtools.replay import ReplayServer
from crdswatch.store import Store
from tests.support.daemon_env import wait_for
from tests.support.fixtures_channels import smtp_pki, smtp_server  # noqa: F401
from tests.support.smtp_server import SmtpTestServer

SUBSCRIBERS = 4


def slow_down(server: SmtpTestServer, rcpt: float, data: float) -> None:
    """RCPT waits before answering; DATA records the message, then waits before its 250."""
    handler: Any = server.handler
    rcpt_orig, data_orig = handler.handle_RCPT, handler.handle_DATA

    async def slow_rcpt(*args: Any) -> str:
        await asyncio.sleep(rcpt)
        return str(await rcpt_orig(*args))

    async def slow_data(*args: Any) -> str:
        reply = str(await data_orig(*args))
        await asyncio.sleep(data)
        return reply

    handler.handle_RCPT, handler.handle_DATA = slow_rcpt, slow_data


def config_text(tmp: Path, replay: ReplayServer, smtp: SmtpTestServer) -> str:
    subs = "".join(f'\n[[subscribers]]\nname = "sub{i}"\nemail = ["sub{i}@example.org"]\n' for i in range(SUBSCRIBERS))
    return f"""
[state]
database = "sqlite:///{tmp}/state.db"
[[sources]]
observatory = "jwst"
server_url = "{replay.url}"
poll_interval = 1
[smtp]
host = "127.0.0.1"
port = {smtp.port}
security = "starttls"
username = "crdswatch"
password = "correct horse"
sender = "crdswatch <crds@example.org>"
ca_file = "{smtp.pki.ca_file}"
max_connections = 1
[http]
listen = "127.0.0.1:0"
[outbox]
lease_seconds = 2
drain_interval = 0.3
backoff_base = 0.5
backoff_max = 1
{subs}"""


def test_sigkill_then_restart_delivers_everything_once(
    tmp_path: Path, replay: ReplayServer, smtp_server: SmtpTestServer  # noqa: F811
) -> None:
    config = tmp_path / "crdswatch.toml"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config.write_text(config_text(tmp_path, replay, smtp_server).replace("127.0.0.1:0", f"127.0.0.1:{port}"))
    env = {**os.environ, "CRDSWATCH_CACHE": str(tmp_path / "cache")}
    slow_down(smtp_server, rcpt=0.6, data=0.6)
    store = Store.open(f"sqlite:///{tmp_path}/state.db")

    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen([sys.executable, "-m", "crdswatch", "run", "--config", str(config)],
                                stdout=subprocess.DEVNULL, stderr=(tmp_path / "log").open("ab"), env=env)

    def rows(context: str) -> list[Any]:
        return [r for r in store.outbox_rows(limit=1000) if r.context == context]

    def ids(context: str) -> list[str]:
        return [m.parsed()["Message-ID"] for m in smtp_server.messages if context in m.parsed()["Subject"]]

    proc = start()
    try:
        wait_for(lambda: store.get_cursor(f"{replay.url}|jwst|latest") is not None, "the baseline")

        # 1. killed after the activation and its outbox rows were committed, before any delivery
        first = replay.activate_next()["context"]  # type: ignore[index]
        wait_for(lambda: len(rows(first)) == SUBSCRIBERS, "the committed outbox rows", step=0.01)
        assert ids(first) == []
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        proc = start()
        wait_for(lambda: all(r.status == "sent" for r in rows(first)), "delivery after restart")

        # 2. killed in the middle of a fan-out: two messages taken, the second not yet acknowledged
        second = replay.activate_next()["context"]  # type: ignore[index]
        wait_for(lambda: len(ids(second)) >= 2, "half the fan-out", step=0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        proc = start()
        wait_for(lambda: len(rows(second)) == SUBSCRIBERS and all(r.status == "sent" for r in rows(second)),
                 "delivery after the second restart")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)

    for context in (first, second):
        counts = Counter(ids(context))
        assert len(counts) == SUBSCRIBERS  # every subscriber got its notice
        assert sum(counts.values()) - len(counts) <= 1  # at most the one unacknowledged message again
        for row in rows(context):
            attempts = store.attempts(row.id)
            assert [a.outcome for a in attempts].count("sent") == 1  # recorded sent exactly once
    assert len(store.list_activations(limit=10)) == 3  # baseline + two: nothing processed twice
    assert sum(1 for r in store.outbox_rows(limit=1000)) == 2 * SUBSCRIBERS  # no row queued twice
