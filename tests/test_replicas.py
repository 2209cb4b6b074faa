"""Two daemon replicas sharing one PostgreSQL database split the work: every activation is
processed once and every notice delivered once, whichever replica did it."""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

from crdswatch.devtools.replay import ReplayServer
from crdswatch.store import Store
from tests.support.daemon_env import smtp_table, spawn_daemon, wait_for
from tests.support.fixtures_channels import smtp_pki, smtp_server  # noqa: F401
from tests.support.smtp_server import SmtpTestServer
from tests.support.store_db import postgres_schema_url

SUBSCRIBERS = 3


def test_two_replicas_share_the_work(tmp_path: Path, replay: ReplayServer, smtp_server: SmtpTestServer) -> None:  # noqa: F811
    subs = "".join(f'\n[[subscribers]]\nname = "sub{i}"\nemail = ["sub{i}@example.org"]\n' for i in range(SUBSCRIBERS))
    with postgres_schema_url() as url:
        procs = []
        for n in range(2):
            config = tmp_path / f"replica{n}.toml"
            config.write_text(f"""
[state]
database = "{url}"
[[sources]]
observatory = "jwst"
server_url = "{replay.url}"
poll_interval = 1
{smtp_table(smtp_server, sender="crdswatch <crds@example.org>")}[http]
listen = "127.0.0.1:0"
[outbox]
drain_interval = 0.2
{subs}""")
            procs.append(spawn_daemon(config, cache=tmp_path / f"cache{n}", log=tmp_path / f"log{n}"))
        store = Store.open(url)
        try:
            wait_for(lambda: store.get_cursor(f"{replay.url}|jwst|latest") is not None, "the baseline")
            contexts = []
            for _ in range(4):
                contexts.append(replay.activate_next()["context"])  # type: ignore[index]
                time.sleep(0.7)  # both replicas poll every second: they race for each activation
            wait_for(lambda: len(smtp_server.messages) >= SUBSCRIBERS * len(contexts), "every notice")
            time.sleep(2)  # a duplicate, if any, would arrive now
        finally:
            for proc in procs:
                proc.send_signal(signal.SIGTERM)
            codes = [proc.wait(60) for proc in procs]
        seen = [a.context for a in store.list_activations(limit=100) if a.diff is not None]
        rows = store.outbox_rows(limit=1000)
        store.close()
    assert codes == [0, 0], [(tmp_path / f"log{n}").read_text()[-2000:] for n in range(2)]
    assert sorted(seen) == sorted(contexts)  # each activation processed once, by one replica
    ids = Counter(m.parsed()["Message-ID"] for m in smtp_server.messages)
    assert len(ids) == SUBSCRIBERS * len(contexts) and set(ids.values()) == {1}
    assert len(rows) == SUBSCRIBERS * len(contexts) and {r.status for r in rows} == {"sent"}


LEASED_SUBSCRIBERS = 6
SMTP_DELAY = 3.0  # seconds the SMTP server takes over each message: more than the lease


def test_a_lease_is_renewed_while_its_rows_are_still_being_sent(
    tmp_path: Path, replay: ReplayServer, smtp_server: SmtpTestServer,  # noqa: F811
) -> None:
    """lease_seconds = 2 and an SMTP server that takes 3 s per message: without renewal the
    other replica would re-claim (and re-send) rows the first is still sending or has queued.
    Every message arrives exactly once (by Message-ID at the sink), and no lease ever expired."""
    handler: Any = smtp_server.handler
    original = handler.handle_DATA

    async def slow_data(*args: Any) -> str:
        await asyncio.sleep(SMTP_DELAY)  # before the message is taken: a re-send would show twice
        return str(await original(*args))

    handler.handle_DATA = slow_data
    subs = "".join(f'\n[[subscribers]]\nname = "sub{i}"\nemail = ["sub{i}@example.org"]\n'
                   for i in range(LEASED_SUBSCRIBERS))
    with postgres_schema_url() as url:
        procs = []
        for n in range(2):
            config = tmp_path / f"replica{n}.toml"
            config.write_text(f"""
[state]
database = "{url}"
[[sources]]
observatory = "jwst"
server_url = "{replay.url}"
poll_interval = 1
{smtp_table(smtp_server, sender="crdswatch <crds@example.org>", extra="max_connections = 1")}[http]
listen = "127.0.0.1:0"
[outbox]
lease_seconds = 2
drain_interval = 0.2
{subs}""")
            procs.append(spawn_daemon(config, cache=tmp_path / f"cache{n}", log=tmp_path / f"log{n}"))
        store = Store.open(url)
        try:
            wait_for(lambda: store.get_cursor(f"{replay.url}|jwst|latest") is not None, "the baseline")
            replay.activate_next()
            wait_for(lambda: sum(1 for r in store.outbox_rows(limit=100) if r.status == "sent") == LEASED_SUBSCRIBERS,
                     "every notice recorded sent", timeout=120)
        finally:
            for proc in procs:
                proc.send_signal(signal.SIGTERM)
            codes = [proc.wait(60) for proc in procs]
        rows = store.outbox_rows(limit=1000)
        attempts = [a for r in rows for a in store.attempts(r.id)]
        store.close()
    logs = [(tmp_path / f"log{n}").read_text() for n in range(2)]
    assert codes == [0, 0], [log[-2000:] for log in logs]
    ids = Counter(m.parsed()["Message-ID"] for m in smtp_server.messages)
    assert len(ids) == LEASED_SUBSCRIBERS and set(ids.values()) == {1}, ids  # each message exactly once
    assert len(rows) == LEASED_SUBSCRIBERS and {r.status for r in rows} == {"sent"}
    assert [a.outcome for a in attempts] == ["sent"] * LEASED_SUBSCRIBERS  # no lease_expired, no retry
    assert all("lease lost" not in log for log in logs)
