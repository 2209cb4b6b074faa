"""HTTP clients are bounded (issue 9, class 11): idle and trickling connections cannot exhaust the
daemon's descriptors or keep /healthz from answering. Real sockets on loopback, bounded in count
and time."""

from __future__ import annotations

import asyncio
import os
import resource
import socket
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import httpx

from crdswatch.devtools.replay import ReplayServer
from tests.support.daemon_env import Clock, free_port, make_daemon, wait_for, write_config

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def tight_config(tmp: Path, replay: ReplayServer, port: int) -> Path:
    path = write_config(tmp, server_url=replay.url, http_port=port)
    path.write_text(path.read_text().replace("[http]\n", "[http]\nmax_connections = 8\nheader_timeout = 1\n"))
    return path


async def test_idle_connections_are_shed_and_timed_out_and_healthz_still_answers(
    tmp_path: Path, replay: ReplayServer,
) -> None:
    port = free_port()
    daemon = make_daemon(tight_config(tmp_path, replay, port), Clock(NOW))
    await daemon.start_http()
    assert daemon.web is not None
    idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    try:
        await daemon.poll(daemon.watches[0])
        for _ in range(50):  # far more than max_connections, saying nothing
            idle.append(await asyncio.open_connection("127.0.0.1", port))
        async with httpx.AsyncClient(timeout=10) as http:
            health = await http.get(f"http://127.0.0.1:{port}/healthz")
            assert (health.status_code, health.text) == (200, "ok\n")
            assert daemon.web.open_connections <= 8
            # every idle connection ends: shed at once (EOF), or 408 after header_timeout
            answers = await asyncio.wait_for(asyncio.gather(*(r.read() for r, _ in idle)), 15)
            assert all(a == b"" or a.startswith(b"HTTP/1.1 408 ") for a in answers)
            shed = sum(a == b"" for a in answers)
            assert shed >= 50 - 8 and any(a.startswith(b"HTTP/1.1 408 ") for a in answers)
            metrics = (await http.get(f"http://127.0.0.1:{port}/metrics")).text
        assert f'crdswatch_http_connections_cut_total{{reason="shed"}} {float(shed)}' in metrics
        assert 'crdswatch_http_connections_cut_total{reason="head_timeout"}' in metrics
    finally:
        for _, w in idle:
            w.close()
        await daemon.shutdown()


async def test_a_trickled_request_head_gets_408_at_the_header_deadline(tmp_path: Path, replay: ReplayServer) -> None:
    port = free_port()
    daemon = make_daemon(tight_config(tmp_path, replay, port), Clock(NOW))
    await daemon.start_http()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        async def trickle() -> None:  # a byte every 0.2 s: each gap is short, the whole is not
            for byte in b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 200:
                if writer.is_closing():
                    return
                writer.write(bytes([byte]))
                await asyncio.sleep(0.2)

        task = asyncio.create_task(trickle())
        answer = await asyncio.wait_for(reader.read(), 15)
        task.cancel()
        assert answer.startswith(b"HTTP/1.1 408 ") and b"connection: close" in answer
    finally:
        writer.close()
        await daemon.shutdown()


def _fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_a_thousand_idle_connections_under_a_1024_descriptor_limit(tmp_path: Path, replay: ReplayServer) -> None:
    """The reported failure: ~1,000 idle connections against a daemon limited to 1,024 descriptors."""
    port = free_port()
    config = write_config(tmp_path, server_url=replay.url, http_port=port)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 2048:  # this test process holds the 1,000 client ends
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(4096, hard), hard))

    # The daemon lowers its own limit first (no preexec_fn: the replay server runs in a thread).
    limited = ("import resource, runpy, sys; resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024)); "
               "sys.argv = ['crdswatch', *sys.argv[1:]]; runpy.run_module('crdswatch', run_name='__main__')")
    log = (tmp_path / "daemon.log").open("w")
    env = {**os.environ, "CRDSWATCH_CACHE": str(tmp_path / "cache")}
    proc = subprocess.Popen([sys.executable, "-c", limited, "run", "--config", str(config)],
                            stdout=log, stderr=subprocess.STDOUT, env=env)
    clients: list[socket.socket] = []
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _healthz(base) == 200, "a healthy daemon")
        for _ in range(1000):
            clients.append(socket.create_connection(("127.0.0.1", port), timeout=10))
        assert _healthz(base) == 200
        assert int(Path(f"/proc/{proc.pid}/limits").read_text().split("Max open files")[1].split()[0]) == 1024
        peak = max(_fd_count(proc.pid) for _ in range(20))
        assert peak < 1024 - 100, peak  # max_connections (256) clients, an accept batch, the rest
        wait_for(lambda: "crdswatch_http_connections_cut_total" in httpx.get(f"{base}/metrics").text,
                 "the shed connections in /metrics", timeout=20)
        metrics = httpx.get(f"{base}/metrics", timeout=10).text
        shed = next(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
                    if line.startswith('crdswatch_http_connections_cut_total{reason="shed"}'))
        assert shed >= 1000 - 256
    finally:
        for c in clients:
            c.close()
        proc.terminate()
        code = proc.wait(timeout=60)
        log.close()
    text = (tmp_path / "daemon.log").read_text()
    assert code == 0, text[-3000:]
    assert "Too many open files" not in text and "EMFILE" not in text


def _healthz(base: str) -> int:
    try:
        return httpx.get(f"{base}/healthz", timeout=10).status_code
    except httpx.HTTPError:
        return 0


def test_a_descriptor_limit_below_max_connections_lowers_the_cap_with_a_warning(
    tmp_path: Path, replay: ReplayServer,
) -> None:
    """LimitNOFILE set too low for [http] max_connections (256 + a reserve of 128): the daemon cannot
    raise it (soft = hard = 256), says so once, and caps connections at what fits with their accept
    batches, one closing and one new (42 + 2 x 42 + 128), so 600 idle
    connections still cannot exhaust its descriptors."""
    port = free_port()
    config = write_config(tmp_path, server_url=replay.url, http_port=port)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 2048:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(4096, hard), hard))
    limited = ("import resource, runpy, sys; resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256)); "
               "sys.argv = ['crdswatch', *sys.argv[1:]]; runpy.run_module('crdswatch', run_name='__main__')")
    log = (tmp_path / "daemon.log").open("w")
    env = {**os.environ, "CRDSWATCH_CACHE": str(tmp_path / "cache")}
    proc = subprocess.Popen([sys.executable, "-c", limited, "run", "--config", str(config)],
                            stdout=log, stderr=subprocess.STDOUT, env=env)
    clients: list[socket.socket] = []
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _healthz(base) == 200, "a healthy daemon")
        for _ in range(600):
            clients.append(socket.create_connection(("127.0.0.1", port), timeout=10))
        assert _healthz(base) == 200
        peak = max(_fd_count(proc.pid) for _ in range(20))
        assert peak < 256, peak
    finally:
        for c in clients:
            c.close()
        proc.terminate()
        code = proc.wait(timeout=60)
        log.close()
    text = (tmp_path / "daemon.log").read_text()
    assert code == 0, text[-3000:]
    warnings = [line for line in text.splitlines() if "descriptor limit below [http] max_connections" in line]
    assert len(warnings) == 1 and "cap=42" in warnings[0], text[-3000:]
    assert "Too many open files" not in text and "EMFILE" not in text
