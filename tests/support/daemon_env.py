"""Helpers for in-process Daemon tests: a TOML written to tmp_path, a settable clock, loopback HTTP."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from crdswatch.config import load_settings
from crdswatch.service.daemon import Daemon

from .smtp_server import SmtpTestServer

__all__ = ["Clock", "cli", "cli_async", "cli_parallel", "free_port", "make_daemon", "raw_http", "until", "wait_for", "write_config"]

SMTP_PASSWORD = "correct horse"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Clock:
    """The daemon's wall clock, moved by the test."""

    now: datetime

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


def smtp_table(
    smtp: SmtpTestServer, *, password: str = SMTP_PASSWORD,
    sender: str = "CRDS notices <crds@example.org>", extra: str = "",
) -> str:
    """The [smtp] table for the test server: STARTTLS and AUTH, trusting its test CA."""
    return f"""
[smtp]
host = "127.0.0.1"
port = {smtp.port}
security = "starttls"
username = "crdswatch"
password = "{password}"
sender = "{sender}"
ca_file = "{smtp.pki.ca_file}"
{extra}
"""


def write_config(
    tmp: Path,
    *,
    server_url: str,
    smtp: SmtpTestServer | None = None,
    smtp_password: str = SMTP_PASSWORD,
    http_port: int | None = None,
    subscribers: str = "",
    extra: str = "",
    source_extra: str = "",
    outbox: str = "backoff_base = 60\nbackoff_max = 600",
    name: str = "crdswatch.toml",
) -> Path:
    """A complete config: one JWST source, optional [smtp] (STARTTLS+AUTH to the test server)."""
    smtp_block = "" if smtp is None else smtp_table(smtp, password=smtp_password, extra="timeout = 5")
    config = tmp / name
    config.write_text(f"""
[state]
database = "sqlite:///{tmp}/state.db"

[[sources]]
observatory = "jwst"
server_url = "{server_url}"
poll_interval = 60
timeout = 5
{source_extra}
{smtp_block}
[http]
listen = "127.0.0.1:{http_port or free_port()}"

[outbox]
{outbox}

{extra}

{subscribers}
""")
    return config


def make_daemon(config: Path, clock: Clock) -> Daemon:
    daemon = Daemon(load_settings(config), clock=clock)
    for watch in daemon.watches:  # transport retries back off fast, so a fault surfaces quickly
        watch.source.client.backoff = 0.01
        watch.source.client.max_backoff = 0.02
    return daemon


def wait_for(check: Callable[[], bool], what: str, timeout: float = 60, step: float = 0.05) -> None:
    """Block (for tests driving a daemon process) until `check()`, or fail naming `what`."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(step)


async def until(check: Callable[[], bool], what: str, timeout: float = 10) -> None:
    """Wait (without blocking the loop, which may be serving the daemon's HTTP) until `check()`."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def raw_http(port: int, request: bytes, timeout: float = 5) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes to 127.0.0.1:port; the status, headers and body of the answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split(" ")[1]), headers, body


def spawn_daemon(config: Path, *, cache: Path, log: Path) -> subprocess.Popen[bytes]:
    """`crdswatch run` as a process of its own: its mapping cache in `cache`, its log (stderr) in `log`."""
    env = {**os.environ, "CRDSWATCH_CACHE": str(cache)}
    return subprocess.Popen([sys.executable, "-m", "crdswatch", "run", "--config", str(config)],
                            stdout=subprocess.DEVNULL, stderr=log.open("w"), env=env)


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """`python -m crdswatch ARGS` as a separate process."""
    return subprocess.run([sys.executable, "-m", "crdswatch", *args], capture_output=True, text=True,
                          timeout=timeout, check=False, env={**os.environ, **(env or {})})


async def cli_async(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """`cli` from a coroutine, leaving the event loop free (it may be serving peers of the command)."""
    return await asyncio.to_thread(cli, *args, timeout=timeout)


def cli_parallel(*commands: Sequence[str], timeout: float = 60) -> list[subprocess.CompletedProcess[str]]:
    """Independent commands side by side (each start costs most of a second); results in order."""
    with ThreadPoolExecutor(max_workers=len(commands) or 1) as pool:
        return list(pool.map(lambda args: cli(*args, timeout=timeout), commands))
