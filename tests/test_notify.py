"""systemd notify protocol against real AF_UNIX datagram sockets (filesystem and abstract)."""

from __future__ import annotations

import os
import socket
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from crdswatch.service import systemd as notify

pytestmark = pytest.mark.skipif(not hasattr(socket, "AF_UNIX"), reason="needs AF_UNIX sockets")


class Listener:
    """A bound datagram socket standing in for systemd's notify socket."""

    def __init__(self, sock: socket.socket, env_value: str) -> None:
        self.sock = sock
        self.env = {"NOTIFY_SOCKET": env_value}

    def receive(self) -> str:
        return self.sock.recv(4096).decode()


@pytest.fixture()
def listener(tmp_path: Path) -> Iterator[Listener]:
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.settimeout(5)
    sock.bind(str(path))
    try:
        yield Listener(sock, str(path))
    finally:
        sock.close()


@pytest.fixture()
def abstract_listener() -> Iterator[Listener]:
    if not sys.platform.startswith("linux"):
        pytest.skip("abstract-namespace sockets are Linux-only")
    name = f"crdswatch-test-{os.getpid()}-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.settimeout(5)
    sock.bind(b"\0" + name.encode())
    try:
        yield Listener(sock, "@" + name)
    finally:
        sock.close()


def test_ready(listener: Listener) -> None:
    assert notify.ready(env=listener.env) is True
    assert listener.receive() == "READY=1"


def test_ready_with_status(listener: Listener) -> None:
    assert notify.ready(status="watching 2 servers", env=listener.env)
    assert listener.receive() == "READY=1\nSTATUS=watching 2 servers"


def test_watchdog(listener: Listener) -> None:
    assert notify.watchdog(env=listener.env)
    assert listener.receive() == "WATCHDOG=1"


def test_stopping(listener: Listener) -> None:
    assert notify.stopping(env=listener.env)
    assert listener.receive() == "STOPPING=1"


def test_status_is_one_line(listener: Listener) -> None:
    assert notify.status("polling jwst\nnext in 60 s", env=listener.env)
    assert listener.receive() == "STATUS=polling jwst next in 60 s"


def test_sd_notify_raw_message(listener: Listener) -> None:
    assert notify.sd_notify("RELOADING=1\nMONOTONIC_USEC=1", env=listener.env)
    assert listener.receive() == "RELOADING=1\nMONOTONIC_USEC=1"


def test_abstract_socket(abstract_listener: Listener) -> None:
    assert notify.ready(env=abstract_listener.env)
    assert abstract_listener.receive() == "READY=1"
    assert notify.watchdog(env=abstract_listener.env)
    assert abstract_listener.receive() == "WATCHDOG=1"


def test_default_env_is_os_environ(listener: Listener, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", listener.env["NOTIFY_SOCKET"])
    assert notify.sd_notify("STATUS=from os.environ")
    assert listener.receive() == "STATUS=from os.environ"


def test_no_socket_means_false(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert notify.sd_notify("READY=1") is False
    assert notify.ready(env={}) is False
    assert notify.watchdog(env={"NOTIFY_SOCKET": ""}) is False
    assert notify.stopping(env={}) is False
    assert notify.status("x", env={}) is False


def test_unreachable_or_odd_socket_means_false(tmp_path: Path) -> None:
    assert notify.ready(env={"NOTIFY_SOCKET": str(tmp_path / "nobody-listens.sock")}) is False
    assert notify.ready(env={"NOTIFY_SOCKET": "relative/path.sock"}) is False


@pytest.mark.parametrize(
    ("usec", "expected"),
    [("60000000", 30.0), ("1000000", 0.5), ("3", 1.5e-6)],
)
def test_watchdog_interval(usec: str, expected: float) -> None:
    assert notify.watchdog_interval({"WATCHDOG_USEC": usec}) == pytest.approx(expected)


def test_watchdog_interval_with_own_pid() -> None:
    env = {"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": str(os.getpid())}
    assert notify.watchdog_interval(env) == pytest.approx(30.0)


def test_watchdog_interval_pid_mismatch() -> None:
    env = {"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": str(os.getpid() + 1)}
    assert notify.watchdog_interval(env) is None


@pytest.mark.parametrize(
    "env",
    [
        {},
        {"WATCHDOG_USEC": ""},
        {"WATCHDOG_USEC": "0"},
        {"WATCHDOG_USEC": "-5"},
        {"WATCHDOG_USEC": "sixty"},
        {"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": "not-a-pid"},
    ],
)
def test_watchdog_interval_absent_or_bad(env: dict[str, str]) -> None:
    assert notify.watchdog_interval(env) is None


def test_watchdog_interval_default_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "10000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    assert notify.watchdog_interval() == pytest.approx(5.0)
