"""Latency: an activation on the replay CRDS server -> the notice in the SMTP sink, with a 1 s poll.

Run: .venv/bin/python bench/latency.py [--activations 10] [--interval 1]

The real daemon (service.daemon.Daemon, its scheduler, poll and drain) watches the replay server
(devtools) with poll_interval = --interval; a NIRSpec-and-everything subscriber gets e-mail
through the fast sink (bench/smtp_sink.py). Each step activates the next context that notifies
the subscriber and times until the sink has the message. Figures: median and p95; the goal is
at most interval + 2 s (the poll phase alone averages interval / 2).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from smtp_sink import Sink

START = "jwst_0500.pmap"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def measure(tmp: Path, sink: Sink, activations: int, interval: int) -> list[float]:
    from crdswatch.config import load_settings
    from crdswatch.devtools.bundled import extract_bundled
    from crdswatch.devtools.replay import ReplayServer
    from crdswatch.service.daemon import Daemon

    data = extract_bundled(tmp / "b")
    os.environ["CRDSWATCH_CACHE"] = str(tmp / "cache")
    with ReplayServer(data / "mappings", data / "config" / "server_config", upto=START) as srv:
        config = tmp / "crdswatch.toml"
        config.write_text(f"""
[state]
database = "sqlite:///{tmp}/state.db"

[[sources]]
observatory = "jwst"
server_url = "{srv.url}"
poll_interval = {interval}

[smtp]
host = "127.0.0.1"
port = {sink.port}
security = "none"
sender = "CRDS notices <crds@bench.invalid>"

[http]
listen = "127.0.0.1:{_free_port()}"
public_url = "https://crdswatch.bench.invalid"
unsubscribe_secret = "bench-{"s" * 32}"

[[subscribers]]
name = "everything"
email = ["all@bench.invalid"]
""")
        daemon = Daemon(load_settings(config))
        _quiet()
        run = asyncio.create_task(daemon.run(install_signals=False))
        # Baseline first: the first poll records the current context and sends nothing.
        while await daemon.store.aio.get_cursor(daemon.watches[0].key) is None:
            await asyncio.sleep(0.05)
        times: list[float] = []
        try:
            for _ in range(activations):
                before = sink.count
                if srv.activate_next() is None:
                    break
                start = time.perf_counter()
                while sink.count == before:
                    if time.perf_counter() - start > 60:
                        raise AssertionError(f"no message within 60 s after {srv.context}")
                    await asyncio.sleep(0.005)
                times.append(time.perf_counter() - start)
                print(f"{srv.context}: {times[-1]:.2f} s", flush=True)
        finally:
            daemon.stop_event.set()
            await run
    return times


def _quiet() -> None:
    """The daemon's info lines (one per poll and send) and the scheduler's shutdown noise stay out."""
    import logging

    import structlog

    logging.disable(logging.CRITICAL)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--activations", type=int, default=10)
    parser.add_argument("--interval", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, Sink() as sink:
        times = asyncio.run(measure(Path(tmp), sink, args.activations, args.interval))
    goal = args.interval + 2.0
    median = statistics.median(times)
    p95 = sorted(times)[max(0, round(0.95 * len(times)) - 1)]
    print(f"activation -> message in the sink, poll every {args.interval} s, {len(times)} activations: "
          f"median {median:.2f} s, p95 {p95:.2f} s, max {max(times):.2f} s "
          f"(goal <= {goal:.0f} s: median {median / goal:.2f}x, p95 {p95 / goal:.2f}x the goal)")


if __name__ == "__main__":
    main()
