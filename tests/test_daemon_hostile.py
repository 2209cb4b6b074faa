"""Issue 9, under each hostile CRDS scenario, the daemon as a real process: /healthz keeps answering
within 1 s, turns 503 (naming the source), the operator gets an alert e-mail, and the process's
peak RSS stays under 300 MB."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.support.daemon_env import free_port, wait_for
from tests.support.fixtures_channels import smtp_pki, smtp_server  # noqa: F401
from tests.support.hostile_crds import HostileCrds, hostile_crds, imap, pmap
from tests.support.smtp_server import SmtpTestServer

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


def make_hostile(crds: HostileCrds, scenario: str) -> None:
    if scenario == "cyclic":
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


@pytest.mark.parametrize("scenario", ["huge-rpc", "trickle", "cyclic", "malformed", "huge-mapping"])
def test_daemon_stays_truthful_under_a_hostile_server(
    tmp_path: Path, smtp_server: SmtpTestServer, scenario: str  # noqa: F811
) -> None:
    port = free_port()
    with hostile_crds() as crds:
        config = tmp_path / "crdswatch.toml"
        config.write_text(f"""
[state]
database = "sqlite:///{tmp_path}/state.db"

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

[limits]
crds_reply_max_bytes = 1048576
mapping_max_bytes = 262144
request_deadline = 1.5
poll_deadline = 4
stale_polls = 3
""")
        env = {**os.environ, "CRDSWATCH_SMTP__PASSWORD": "correct horse", "CRDSWATCH_CACHE": str(tmp_path / "cache")}
        log = (tmp_path / "daemon.log").open("w")
        proc = subprocess.Popen([sys.executable, "-m", "crdswatch", "run", "--config", str(config)],
                                stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            wait_for(lambda: _ok(port), "a healthy daemon", timeout=60)
            make_hostile(crds, scenario)
            seen: list[tuple[int, str]] = []
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                seen.append(healthz(port))  # raises if /healthz takes more than 1 s
                alerts = [m for m in smtp_server.messages if "[crdswatch] alert" in str(m.parsed()["Subject"])]
                if seen[-1][0] == 503 and alerts:
                    break
                time.sleep(0.25)
            assert seen[-1][0] == 503, seen[-5:]
            assert "jwst" in seen[-1][1], seen[-1]
            assert alerts, "no alert e-mail"
            assert peak_rss_mb(proc.pid) < RSS_BOUND_MB
            assert proc.poll() is None  # still running
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
            log.close()


def _ok(port: int) -> bool:
    try:
        return healthz(port)[0] == 200
    except OSError:
        return False
