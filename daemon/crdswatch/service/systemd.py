"""The systemd notify protocol (READY, WATCHDOG, STOPPING, STATUS) over $NOTIFY_SOCKET, without libsystemd."""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping

__all__ = [
    "ready",
    "sd_notify",
    "status",
    "stopping",
    "watchdog",
    "watchdog_interval",
]


def _socket_address(path: str) -> str | bytes | None:
    """The address to send to: '@name' is Linux's abstract namespace (a leading NUL byte)."""
    if path.startswith("@"):
        return b"\0" + path[1:].encode()
    if path.startswith("/"):
        return path
    # systemd only ever hands out absolute paths or abstract names; anything else is not meant for us.
    return None


def sd_notify(state: str, env: Mapping[str, str] = os.environ) -> bool:
    """Send `state` (newline-separated KEY=VALUE lines) to the service manager.

    Returns True when the datagram was sent, False when not running under systemd (no
    $NOTIFY_SOCKET, or one that cannot be reached). Never raises for a missing or dead socket:
    a notification is advisory and must not take the daemon down.
    """
    path = env.get("NOTIFY_SOCKET", "")
    if not path:
        return False
    address = _socket_address(path)
    if address is None or not hasattr(socket, "AF_UNIX"):
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(state.encode())
    except OSError:
        return False
    return True


def _with_status(first: str, text: str | None) -> str:
    if text is None:
        return first
    return f"{first}\nSTATUS={_one_line(text)}"


def _one_line(text: str) -> str:
    # A newline would start a new KEY=VALUE assignment in the message.
    return " ".join(text.splitlines())


def ready(status: str | None = None, env: Mapping[str, str] = os.environ) -> bool:
    """Tell systemd start-up is complete (Type=notify units stay 'activating' until this)."""
    return sd_notify(_with_status("READY=1", status), env)


def watchdog(env: Mapping[str, str] = os.environ) -> bool:
    """Ping the watchdog: send at least every `watchdog_interval()` seconds when WatchdogSec= is set."""
    return sd_notify("WATCHDOG=1", env)


def stopping(status: str | None = None, env: Mapping[str, str] = os.environ) -> bool:
    """Tell systemd the daemon has begun an orderly shutdown."""
    return sd_notify(_with_status("STOPPING=1", status), env)


def status(text: str, env: Mapping[str, str] = os.environ) -> bool:
    """Set the free-form status line that `systemctl status` shows."""
    return sd_notify(f"STATUS={_one_line(text)}", env)


def watchdog_interval(env: Mapping[str, str] = os.environ) -> float | None:
    """Seconds between watchdog pings (half of $WATCHDOG_USEC), or None when no watchdog is asked for.

    None also when $WATCHDOG_PID is set and names another process (the variable was inherited
    by a child), or when either variable is malformed or not positive.
    """
    raw_pid = env.get("WATCHDOG_PID")
    if raw_pid:
        try:
            if int(raw_pid) != os.getpid():
                return None
        except ValueError:
            return None
    raw_usec = env.get("WATCHDOG_USEC")
    if not raw_usec:
        return None
    try:
        usec = int(raw_usec)
    except ValueError:
        return None
    if usec <= 0:
        return None
    return usec / 2 / 1_000_000
