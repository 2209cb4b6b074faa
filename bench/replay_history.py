"""The whole bundled JWST history, from an empty state, through the real pipeline functions.

Run: .venv/bin/python bench/replay_history.py [--subscribers 10] [--profile out.prof]

The replay CRDS server (devtools) serves the whole bundled history; a watch with `since` set to
the first context backfills every activation in one `poll_once` (download and verify every
mapping, diff, match, queue), then `drain_until_idle` renders and sends every notice into the
fast SMTP sink (bench/smtp_sink.py, its own process). The replay server runs in a process of its
own too, as a real CRDS server is elsewhere (its handler threads would otherwise share this
process's GIL: --server-in-process measures that). Figures: wall time of poll and drain, their
sum (the goal is <= 3 s), and the peak RSS of this process (goal <= 150 MB). The clock starts
once the process is set up as the daemon's start-up leaves it (store opened and migrated,
subscribers stored, the source's clients built, the notice templates compiled: ~0.3 s, counted in "end to end"). Run on a shared
machine, the wall time is an upper bound.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import multiprocessing as mp
import resource
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from smtp_sink import Sink

SENDER = "CRDS notices <crds-notices@bench.invalid>"
GOAL_S, GOAL_MB = 3.0, 150.0
# Ten subscribers with the filters people use: one instrument, several, a reference type, all.
FILTERS: list[dict[str, Any]] = [
    {"instruments": ["nirspec"]}, {"instruments": ["nircam"]}, {"instruments": ["miri"]},
    {"instruments": ["niriss"]}, {"instruments": ["fgs"]}, {"instruments": ["nirspec", "nircam"]},
    {"instruments": ["miri"], "reftypes": ["flat"]}, {"reftypes": ["dark"]}, {}, {"instruments": ["nirspec", "miri"]},
]


def _serve(data: Path, urls: Any) -> None:
    from crdswatch.devtools.replay import ReplayServer, serve_forever

    def ready(server: ReplayServer) -> None:
        while server.activate_next() is not None:  # the whole history is visible
            pass
        urls.put(server.url)

    serve_forever(data / "mappings", data / "config" / "server_config", on_ready=ready)


@contextlib.contextmanager
def replay_server(data: Path, in_process: bool) -> Iterator[str]:
    """The replay server with the whole history visible: its URL."""
    if in_process:
        from crdswatch.devtools.replay import ReplayServer

        with ReplayServer(data / "mappings", data / "config" / "server_config") as srv:
            while srv.activate_next() is not None:
                pass
            yield srv.url
        return
    ctx = mp.get_context("spawn")  # a clean interpreter: no threads or loops of this one
    urls = ctx.Queue()
    proc = ctx.Process(target=_serve, args=(data, urls), daemon=True)
    proc.start()
    try:
        yield str(urls.get(timeout=120))
    finally:
        proc.terminate()
        proc.join(10)


async def replay(subscribers: int, tmp: Path, port: int, in_process: bool = False) -> dict[str, Any]:
    from sqlalchemy import insert

    from crdswatch.app.drain import drain_until_idle
    from crdswatch.app.poll import Watch, poll_once
    from crdswatch.config import Settings
    from crdswatch.devtools.bundled import extract_bundled
    from crdswatch.render.email import warm_templates
    from crdswatch.service.collector import settle_collector
    from crdswatch.service.runtime import ChannelSenders
    from crdswatch.sources.crds import CrdsSource
    from crdswatch.store import Store
    from crdswatch.store.schema import subscribers as subscribers_table

    data = extract_bundled(tmp / "b")
    url = f"sqlite:///{tmp}/state.db"
    with replay_server(data, in_process) as server_url:
        # Set-up, as the daemon's start-up does it, before the clock starts: the store opened and
        # migrated, the subscribers in it, the source's HTTP clients built.
        store = Store.open(url)
        now = datetime.now(UTC)
        rows = [{"name": f"sub{i:02d}", "created_at": now, "updated_at": now,
                 "config": {"email": [f"sub{i:02d}@bench.invalid"], "origin": "cli", **FILTERS[i % len(FILTERS)]}}
                for i in range(subscribers)]
        with store.engine.begin() as conn:
            conn.execute(insert(subscribers_table), rows)
        source = CrdsSource(server_url, "jwst", tmp / "cache", fits_fallback=False)
        warm_templates()  # the notice templates compiled, as service.daemon.Daemon.run does at start
        settle_collector()  # what the process built so far frozen, as service.daemon.Daemon.run does once started
        start = time.perf_counter()
        history = await source.history()
        watch = Watch(source, since=history[0].context)
        report = await poll_once(watch, store, datetime.now(UTC))
        poll_s = time.perf_counter() - start
        settings = Settings(
            state={"database": url},
            smtp={"host": "127.0.0.1", "port": port, "security": "none", "sender": SENDER, "max_connections": 4},
            http={"public_url": "https://crdswatch.bench.invalid", "unsubscribe_secret": "bench-" + "s" * 32},
        )
        senders = ChannelSenders(settings, store)
        start = time.perf_counter()
        drained = await drain_until_idle(store, senders, "bench", lambda: datetime.now(UTC),
                                         limits=senders.concurrency())
        drain_s = time.perf_counter() - start
        await senders.aclose()
        await source.aclose()
        counts = store.counts()
        store.close()
    return {"activations": len(report.processed), "history": len(history), "queued": report.queued,
            "sent": drained.sent, "dead": drained.dead, "counts": counts, "poll_s": poll_s, "drain_s": drain_s,
            "downloads": source.fetcher.downloads}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subscribers", type=int, default=10)
    parser.add_argument("--profile", help="write a cProfile of the replay to this file")
    parser.add_argument("--server-in-process", action="store_true",
                        help="run the replay server in this process (its threads share the GIL)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name, Sink() as sink:
        tmp = Path(tmp_name)
        profiler = cProfile.Profile() if args.profile else None
        wall = time.perf_counter()
        if profiler is not None:
            profiler.enable()
        r = asyncio.run(replay(args.subscribers, tmp, sink.port, args.server_in_process))
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(args.profile)
        wall = time.perf_counter() - wall
        received = sink.count
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    pipeline = r["poll_s"] + r["drain_s"]
    ok = "ok" if r["sent"] == received else "MISMATCH"
    where = "in this process" if args.server_in_process else "in a process of its own"
    print(f"replay server {where}; history: {r['history']} activations, {r['activations']} replayed, {r['downloads']} mappings downloaded")
    print(f"poll (download, verify, diff, match, queue): {r['poll_s']:.2f} s; queued {r['queued']} rows")
    print(f"drain (render, send): {r['drain_s']:.2f} s; sent {r['sent']}, dead {r['dead']}, "
          f"sink got {received} [{ok}]")
    print(f"through the pipeline: {pipeline:.2f} s (goal <= {GOAL_S:.0f} s: {pipeline / GOAL_S:.2f}x the goal); "
          f"end to end incl. extract and startup: {wall:.2f} s")
    print(f"peak RSS: {rss:.0f} MB (goal <= {GOAL_MB:.0f} MB: {rss / GOAL_MB:.2f}x the goal)")


if __name__ == "__main__":
    main()
