"""The database is bounded too: a SQLite write lock held by another process, and a PostgreSQL that
is unreachable, never answers, or stops answering mid-run, delay only the work that needs it.
/healthz keeps answering (and says what is wrong); every wait ends with a clear error."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import structlog
from sqlalchemy.engine import make_url

from crdswatch.devtools.replay import ReplayServer
from crdswatch.service.daemon import Daemon
from tests.support.daemon_env import Clock, cli, free_port, make_daemon, raw_http, write_config
from tests.support.store_db import postgres_schema_url
from tests.support.tcp_proxy import FreezableProxy
from tests.test_service import NOW

# Holds SQLite's write lock (BEGIN IMMEDIATE) until its stdin closes: another crdswatch command, a
# backup, or an operator in the sqlite3 shell.
LOCKER = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
sys.stdin.read()
conn.execute("ROLLBACK")
"""


def with_limits(config: Path, keys: str, database: str | None = None) -> Path:
    text = config.read_text() + f"\n[limits]\n{keys}\n"
    if database is not None:
        text = "\n".join(f'database = "{database}"' if line.startswith("database = ") else line
                         for line in text.splitlines())
    config.write_text(text)
    return config


def lock_holder(db: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", LOCKER, str(db)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


async def healthz(daemon: Daemon) -> tuple[int, bytes]:
    status, _, body = await raw_http(daemon.settings.http.port, b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
    return status, body


async def test_sqlite_locked_by_another_process_blocks_only_the_database_work(
    tmp_path: Path, replay: ReplayServer
) -> None:
    config = with_limits(write_config(tmp_path, server_url=replay.url, http_port=free_port()), "db_lock_timeout = 2")
    daemon = make_daemon(config, Clock(NOW))
    watch = daemon.watches[0]
    await daemon.start_http()
    await daemon.poll(watch)  # baseline, before the lock is taken
    assert (await healthz(daemon))[0] == 200
    holder = lock_holder(tmp_path / "state.db")
    try:
        assert holder.stdout is not None and await asyncio.to_thread(holder.stdout.readline) == "locked\n"
        with structlog.testing.capture_logs() as logs:
            drain = asyncio.create_task(daemon.drain())  # its first step takes the write lock
            await asyncio.sleep(0.05)
            status, _ = await healthz(daemon)
            assert status == 200 and not drain.done()  # answered while the drain waits for the lock
            await drain  # ends after lock_timeout, with the reason
            status, body = await healthz(daemon)
            assert status == 503 and b"outbox: 1 consecutive failed drains" in body
            assert b"locked" in body
            replay.activate_next()
            await daemon.poll(watch)  # recording the activation needs the lock too: a failed poll
        assert [e["event"] for e in logs if e["log_level"] == "warning"] == ["outbox drain failed", "poll failed"]
        assert "locked" in next(e for e in logs if e["event"] == "poll failed")["error"]
        assert daemon.health.failures[watch.key] == 1
    finally:
        holder.communicate("", timeout=10)  # lock released
    await daemon.poll(watch)
    await daemon.drain()
    assert await healthz(daemon) == (200, b"ok\n")
    assert daemon.store.list_activations(watch.key)[0].context == replay.context
    await daemon.shutdown()


def test_unreachable_or_silent_postgresql_is_one_clear_error_within_the_connect_timeout(
    tmp_path: Path, replay: ReplayServer
) -> None:
    silent = __import__("socket").create_server(("127.0.0.1", 0))  # accepts (kernel backlog), never answers
    try:
        for port, why in ((free_port(), "refused"), (silent.getsockname()[1], "timeout")):
            url = f"postgresql+psycopg://postgres@127.0.0.1:{port}/crdswatch"
            config = with_limits(write_config(tmp_path, server_url=replay.url, name=f"{why}.toml"),
                                "db_connect_timeout = 2", database=url)
            done = cli("outbox", "--config", str(config), timeout=60)
            assert done.returncode == 2, done
            lines = done.stderr.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("crdswatch: error: cannot open the state database"), lines
            assert f"127.0.0.1:{port}" in lines[0] and why in lines[0].lower(), lines
    finally:
        silent.close()


async def test_postgresql_that_stops_answering_mid_run_trips_the_deadline_not_the_loop(
    tmp_path: Path, replay: ReplayServer
) -> None:
    with postgres_schema_url() as pg_url:
        url = make_url(pg_url)
        with FreezableProxy(url.host or "127.0.0.1", url.port or 5432) as proxy:
            proxied = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
            config = with_limits(write_config(tmp_path, server_url=replay.url, http_port=free_port()),
                                "db_connect_timeout = 1\ndb_statement_timeout = 1\ndb_lock_timeout = 1",
                                database=proxied)
            daemon = make_daemon(config, Clock(NOW))
            await daemon.start_http()
            await daemon.poll(daemon.watches[0])
            assert (await healthz(daemon))[0] == 200
            proxy.frozen.set()  # the server goes silent: no reset, no error
            drain = asyncio.create_task(daemon.drain())
            await asyncio.sleep(0.05)
            status, _ = await healthz(daemon)
            assert status == 200 and not drain.done()
            await drain  # the deadline (connect + max(statement, lock) + 5 s) ends it
            status, body = await healthz(daemon)
            assert status == 503 and b"did not finish within 7 s" in body, body
            proxy.frozen.clear()
            await daemon.drain()
            assert await healthz(daemon) == (200, b"ok\n")
            await daemon.shutdown()
