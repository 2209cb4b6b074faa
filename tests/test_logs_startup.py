"""Issue 9, "never silent" for operators: the real daemon as a process.

Logs: under `--log-format json` every line it writes (its own events and every library's:
the CRDS client's retry warnings, APScheduler, the plaintext-SMTP warning, `warnings.warn`)
is one JSON object; the text format has no ANSI colour off a terminal.
Start-up failures: one line on stderr (what, where, what to do), exit 2, no traceback.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from crdswatch.devtools.replay import ReplayServer
from tests.support.daemon_env import free_port, wait_for, write_config

TOKEN = "A" + "b" * 7


def _env(tmp: Path) -> dict[str, str]:
    env = {**os.environ, "CRDSWATCH_CACHE": str(tmp / "cache")}
    env.pop("FORCE_COLOR", None)
    return env


def run_daemon(config: Path, fmt: str, tmp: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """`crdswatch run` expected to fail at start-up."""
    return subprocess.run([sys.executable, "-m", "crdswatch", "run", "--config", str(config), "--log-format", fmt],
                          capture_output=True, text=True, timeout=timeout, check=False, env=_env(tmp))


@contextmanager
def daemon(config: Path, fmt: str, tmp: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """A running daemon whose stdout and stderr go to one file; SIGTERM at the end."""
    out = tmp / f"daemon-{fmt}.log"
    with out.open("wb") as sink:
        proc = subprocess.Popen([sys.executable, "-W", "always", "-m", "crdswatch", "run", "--config", str(config),
                                 "--log-format", fmt], stdout=sink, stderr=subprocess.STDOUT, env=_env(tmp))
        try:
            yield proc, out
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def healthz(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
            return int(r.status)
    except urllib.error.HTTPError as e:
        return int(e.code)
    except OSError:
        return 0


def _plain_smtp(port: int) -> str:
    """An [smtp] table with security = "none" (the channel warns it sends in plaintext)."""
    return f"""
[smtp]
host = "127.0.0.1"
port = {port}
security = "none"
sender = "crds@example.org"
"""


def _provoke(tmp: Path, replay: ReplayServer, fmt: str) -> str:
    """Run the daemon through a retried poll and a warning, stop it; everything it wrote."""
    http_port = free_port()
    config = write_config(tmp, server_url=replay.url, http_port=http_port, name=f"{fmt}.toml",
                          source_extra="poll_interval = 1", extra=_plain_smtp(free_port()),
                          subscribers='[[subscribers]]\nname = "s"\nemail = ["s@example.org"]\n')
    text = config.read_text().replace("poll_interval = 60\n", "", 1)
    config.write_text(text)
    replay.inject_fault("http500", count=1)  # the first poll's request fails once: a retry warning
    with daemon(config, fmt, tmp) as (proc, out):
        wait_for(lambda: healthz(http_port) == 200, "a healthy daemon")
        wait_for(lambda: "retry" in out.read_text(), "the retry warning")
        assert proc.poll() is None
    return out.read_text()


def test_json_format_makes_every_line_one_json_object(tmp_path: Path, replay: ReplayServer) -> None:
    output = _provoke(tmp_path, replay, "json")
    lines = output.splitlines()
    events = [json.loads(line) for line in lines]  # every line, or this raises naming it
    assert all(isinstance(e, dict) and "event" in e and "level" in e for e in events)
    loggers = {e.get("logger") for e in events}
    assert "crdswatch.sources.crds_rpc" in loggers, lines  # the client's stdlib retry warning
    assert any(str(name).startswith("apscheduler") for name in loggers), lines  # APScheduler's own lines
    assert any("plaintext" in e["event"] for e in events)  # the SMTP channel's stdlib warning
    assert any(e["event"] == "started" for e in events) and any(e["event"] == "stopped" for e in events)
    assert "\x1b[" not in output


def test_text_format_has_no_colour_off_a_terminal(tmp_path: Path, replay: ReplayServer) -> None:
    output = _provoke(tmp_path, replay, "console")
    assert "started" in output and "retry" in output and "plaintext" in output
    assert "\x1b[" not in output


def test_warnings_and_uncaught_errors_become_json_too() -> None:
    code = ("import warnings, logging, sys; from crdswatch.service.logs import configure; configure('json'); "
            "warnings.warn('a deprecated thing', DeprecationWarning); "
            "logging.getLogger('x').error('multi\\nline', exc_info=ValueError('boom')); "
            "raise RuntimeError('uncaught')")
    proc = subprocess.run([sys.executable, "-W", "always", "-c", code], capture_output=True, text=True, timeout=60,
                          check=False)
    assert proc.returncode == 1
    events = [json.loads(line) for line in (proc.stdout + proc.stderr).splitlines()]
    assert [e["level"] for e in events] == ["warning", "error", "critical"]
    assert "a deprecated thing" in events[0]["event"]
    assert "RuntimeError: uncaught" in events[2]["exception"]


# -- start-up failures -------------------------------------------------------------------------------


def assert_one_line(proc: subprocess.CompletedProcess[str], *needles: str) -> str:
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@contextmanager
def occupied() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield int(s.getsockname()[1])


@pytest.mark.parametrize("fmt", ["console", "json"])
def test_busy_http_port(tmp_path: Path, fmt: str) -> None:
    with occupied() as port:
        config = write_config(tmp_path, server_url="http://127.0.0.1:9", http_port=port)
        line = assert_one_line(run_daemon(config, fmt, tmp_path), f"127.0.0.1:{port}", "[http] listen",
                               "already in use")
    if fmt == "json":
        assert json.loads(line)["level"] == "critical"
    else:
        assert line.startswith("crdswatch: error: ")


def test_busy_inbound_port(tmp_path: Path) -> None:
    inbound = f"""
[smtp]
host = "127.0.0.1"
port = {free_port()}
sender = "crds@example.org"

[inbound]
listen = "127.0.0.1:PORT"
domain = "lists.example.org"
token_secret = "a-test-token-secret-0123456789"

[[lists]]
name = "nirspec_reffiles_upd"
observatories = ["jwst"]
"""
    with occupied() as port:
        config = write_config(tmp_path, server_url="http://127.0.0.1:9", extra=inbound.replace("PORT", str(port)))
        assert_one_line(run_daemon(config, "console", tmp_path), f"127.0.0.1:{port}", "[inbound] listen",
                        "already in use")


def test_database_unreachable(tmp_path: Path) -> None:
    with occupied() as port:  # listening, never accepting a PostgreSQL conversation... use a closed one:
        pass
    config = write_config(tmp_path, server_url="http://127.0.0.1:9")
    url = f"postgresql+psycopg://crdswatch:{TOKEN}@127.0.0.1:{port}/crdswatch"
    config.write_text(config.read_text().replace(f'"sqlite:///{tmp_path}/state.db"', f'"{url}"'))
    line = assert_one_line(run_daemon(config, "console", tmp_path), "[state] database", f"127.0.0.1:{port}",
                           "running and reachable")
    assert TOKEN not in line


def test_unwritable_sqlite_path(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    config = write_config(tmp_path, server_url="http://127.0.0.1:9")
    config.write_text(config.read_text().replace(f"{tmp_path}/state.db", f"{tmp_path}/a-file/state.db"))
    assert_one_line(run_daemon(config, "console", tmp_path), "[state] database", "a-file/state.db", "writable")


@pytest.mark.parametrize("content", [None, "not a certificate\n"])
def test_bad_ca_file(tmp_path: Path, content: str | None) -> None:
    ca = tmp_path / "ca.pem"
    if content is not None:
        ca.write_text(content)
    smtp = f'[smtp]\nhost = "127.0.0.1"\nport = {free_port()}\nsender = "crds@example.org"\nca_file = "{ca}"\n'
    config = write_config(tmp_path, server_url="http://127.0.0.1:9", extra=smtp)
    assert_one_line(run_daemon(config, "console", tmp_path), "[smtp] ca_file", str(ca), "PEM")


def test_malformed_config_names_the_key_path(tmp_path: Path) -> None:
    config = write_config(tmp_path, server_url="http://127.0.0.1:9",
                          subscribers='[[subscribers]]\nname = "miri"\nemail = ["m@example.org"]\nrefypes = ["x"]\n')
    assert_one_line(run_daemon(config, "console", tmp_path), "subscribers[0] (miri).refypes", "reftypes")
    line = assert_one_line(run_daemon(config, "json", tmp_path))
    assert "refypes" in json.loads(line)["error"]
