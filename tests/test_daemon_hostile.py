"""Issue 9, under each hostile scenario, the daemon as a real process: /healthz keeps answering
within 1 s, turns 503 (naming the source, or the outbox when the database is what fails), the
operator gets an alert e-mail, the process's peak RSS stays under 300 MB, and every outbox row
ends sent, pending or dead-with-reason. The scenarios: a hostile CRDS server of our own, a second
process holding the SQLite write lock, and a PostgreSQL that stops answering (a frozen proxy)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from crdswatch.store import Store
from tests.support.daemon_env import free_port, wait_for
from tests.support.fixtures_channels import smtp_pki, smtp_server  # noqa: F401
from tests.support.hostile_crds import HostileCrds, hostile_crds, imap, pmap, rmap
from tests.support.smtp_server import SmtpTestServer
from tests.support.store_db import postgres_schema_url
from tests.support.tcp_proxy import FreezableProxy
from tests.test_db_bounds import lock_holder

RSS_BOUND_MB = 300


def healthz(port: int) -> tuple[int, str]:
    """Status and reason; raises if the daemon does not answer within 1 s."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):  # the high-water mark: the most the process ever held
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM in /proc")


DB_SCENARIOS = ("sqlite-locked", "postgres-frozen")


@contextmanager
def database(scenario: str, tmp_path: Path) -> Iterator[tuple[str, FreezableProxy | None]]:
    """The daemon's database URL, and the proxy that can freeze it (PostgreSQL only)."""
    if scenario != "postgres-frozen":
        yield f"sqlite:///{tmp_path}/state.db", None
        return
    with postgres_schema_url() as pg_url:
        url = make_url(pg_url)
        with FreezableProxy(url.host or "127.0.0.1", url.port or 5432) as proxy:
            yield url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False), proxy


def make_hostile(crds: HostileCrds, scenario: str, stack: ExitStack, tmp_path: Path,
                 proxy: FreezableProxy | None) -> None:
    if scenario == "sqlite-locked":
        holder = stack.enter_context(lock_holder(tmp_path / "state.db"))
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        stack.callback(holder.communicate, "", 10)  # released before the rows are read
    elif scenario == "postgres-frozen":
        assert proxy is not None
        proxy.frozen.set()  # silent: no reset, no error
        stack.callback(proxy.frozen.clear)
    elif scenario == "cyclic":
        crds.add("jwst_nircam_0002.imap", imap("jwst_nircam_0002.imap", "nircam", {"DARK": "jwst_nircam_0002.imap"}))
        crds.add("jwst_0002.pmap", pmap("jwst_0002.pmap", {"NIRCAM": "jwst_nircam_0002.imap"}))
        crds.activate("jwst_0002.pmap", "2024-05-01 00:00:00")
    elif scenario == "malformed":
        crds.add("jwst_0002.pmap", "header = {'a': " + "-" * 200_000 + "1}\nselector = {}\n")
        crds.activate("jwst_0002.pmap", "2024-05-01 00:00:00")
    elif scenario == "huge-mapping":
        crds.activate("jwst_0002.pmap", "2024-05-01 00:00:00")
        crds.hostile = "huge-mapping"
    else:
        crds.hostile = scenario


@pytest.mark.parametrize("scenario", ["huge-rpc", "trickle", "cyclic", "malformed", "huge-mapping", *DB_SCENARIOS])
def test_daemon_stays_truthful_under_a_hostile_server(
    tmp_path: Path, smtp_server: SmtpTestServer, scenario: str  # noqa: F811
) -> None:
    port = free_port()
    with hostile_crds() as crds, database(scenario, tmp_path) as (db_url, proxy):
        config = tmp_path / "crdswatch.toml"
        config.write_text(f"""
[state]
database = "{db_url}"

[[sources]]
observatory = "jwst"
server_url = "{crds.url}"
poll_interval = 1
alert_after = 2
timeout = 5

[smtp]
host = "127.0.0.1"
port = {smtp_server.port}
security = "starttls"
username = "crdswatch"
sender = "crdswatch <crdswatch@example.org>"
ca_file = "{smtp_server.pki.ca_file}"

[http]
listen = "127.0.0.1:{port}"

[alerts]
admin_email = ["ops@example.org"]

[outbox]
drain_interval = 0.5

[limits]
crds_reply_max_bytes = 1048576
mapping_max_bytes = 262144
request_deadline = 1.5
poll_deadline = 4
stale_polls = 3
db_connect_timeout = 1
db_statement_timeout = 1
db_lock_timeout = 1

[[subscribers]]
name = "team"
email = ["team@example.org"]

[[subscribers]]
name = "hook"
webhook_url = "http://127.0.0.1:{free_port()}/hook"
webhook_secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
""")
        env = {**os.environ, "CRDSWATCH_SMTP__PASSWORD": "correct horse", "CRDSWATCH_CACHE": str(tmp_path / "cache")}
        log = (tmp_path / "daemon.log").open("w")
        proc = subprocess.Popen([sys.executable, "-m", "crdswatch", "run", "--config", str(config)],
                                stdout=log, stderr=subprocess.STDOUT, env=env)
        stack = ExitStack()
        try:
            wait_for(lambda: _ok(port), "a healthy daemon", timeout=60)
            # a benign activation first, so the outbox holds rows when the trouble starts: one
            # e-mail (sent), one webhook to a closed port (retried, with its reason)
            name = "jwst_nircam_dark_0005.rmap"
            crds.activate(crds.context_with_rmap(5, {name: rmap(name, "nircam", "dark", {"NRCA1": "d5.fits"})},
                                                 {"DARK": name}), "2024-03-01 00:00:00")
            wait_for(lambda: any(m.rcpt_tos == ("team@example.org",) for m in smtp_server.messages),
                     "the notice e-mail", timeout=60)
            make_hostile(crds, scenario, stack, tmp_path, proxy)
            seen: list[tuple[int, str]] = []
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                seen.append(healthz(port))  # raises if /healthz takes more than 1 s
                alerts = [m for m in smtp_server.messages if "[crdswatch] alert" in str(m.parsed()["Subject"])]
                if seen[-1][0] == 503 and alerts:
                    break
                time.sleep(0.25)
            assert seen[-1][0] == 503, seen[-5:]
            # the source names itself; a database that fails shows as the outbox or as polls that fail
            assert any(w in seen[-1][1] for w in (("jwst", "outbox") if scenario in DB_SCENARIOS else ("jwst",))), seen

            assert alerts, "no alert e-mail"
            assert peak_rss_mb(proc.pid) < RSS_BOUND_MB
            assert proc.poll() is None  # still running
        finally:
            stack.close()  # the database answers again
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
            log.close()
        with Store.open(db_url) as store:
            rows = store.outbox_rows(limit=100)
        assert {(r.subscriber, r.status) for r in rows} >= {("team", "sent"), ("hook", "pending")}, rows
        for r in rows:
            assert r.status in ("sent", "pending", "dead"), r
            assert r.status == "sent" or r.attempts == 0 or r.last_error, r  # every retry and death says why


def _ok(port: int) -> bool:
    try:
        return healthz(port)[0] == 200
    except OSError:
        return False
