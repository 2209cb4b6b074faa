"""Fan-out of one real activation (jwst_0541) to 1,000 / 10,000 e-mail subscribers, vs a naive sender.

Run: .venv/bin/python bench/fanout.py [--sizes 1000,10000] [--databases sqlite,postgresql]
     [--pg-url postgresql+psycopg://postgres@127.0.0.1:5432/test_perf] [--list-members 10000]

Everything runs on loopback: the bundled JWST history on the replay CRDS server, and a fast SMTP
sink (bench/smtp_sink.py, PIPELINING, counts and discards) in a process of its own. In the same
run, the naive sender (stdlib smtplib, one connection per message) sends the same notice into
the same sink; the ratio is crdswatch's msg/s over the naive msg/s.

Each crdswatch case runs in a fresh process, so its peak RSS is its own: poll (diff, match,
queue the outbox rows), then drain until the outbox is empty. Figures per case: queue time and
the longest the event loop was held (a 5 ms ticker), drain msg/s, peak RSS, outbox bytes per row
(SQLite: dbstat of the deliveries table and its indexes; PostgreSQL: pg_total_relation_size),
and the one stored copy of the activation. The PostgreSQL database given is emptied first:
use a database of its own. Every case has a deadline (--case-timeout). --list-members N adds a
SQLite case where the N recipients are members of one mailing list ([[lists]]): their mail carries
the list's headers and a VERP envelope sender per member.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import smtplib
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from smtp_sink import Sink

CONTEXT, PREVIOUS = "jwst_0541.pmap", "jwst_0540.pmap"
SENDER = "CRDS notices <crds-notices@bench.invalid>"
DEFAULT_PG = os.environ.get("CRDSWATCH_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test_perf")


# ------------------------------------------------------------------ the naive sender


def naive_send(message: bytes, port: int, count: int) -> float:
    """stdlib smtplib, a new connection per message (what a quick script does); returns msg/s."""
    start = time.perf_counter()
    for i in range(count):
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
            smtp.sendmail("crds-notices@bench.invalid", [f"sub{i}@bench.invalid"], message)
    return count / (time.perf_counter() - start)


async def _one_message(tmp: Path) -> bytes:
    """The notice one NIRSpec subscriber gets for jwst_0541, rendered by crdswatch itself."""
    from crdswatch.contexts.diff import diff_contexts
    from crdswatch.contexts.pending import new_reference_files
    from crdswatch.devtools.bundled import extract_bundled
    from crdswatch.devtools.replay import ReplayServer
    from crdswatch.model import ActivationDiff
    from crdswatch.notices.codec import subscriber_from_json
    from crdswatch.notices.match import notices_for
    from crdswatch.notices.subscriptions import subscription_from_config
    from crdswatch.render import email_message
    from crdswatch.sources.crds import CrdsSource

    data = extract_bundled(tmp / "b")
    with ReplayServer(data / "mappings", data / "config" / "server_config", upto=CONTEXT) as srv:
        server_url = srv.url
        source = CrdsSource(server_url, "jwst", tmp / "cache", fits_fallback=False)
        history = await source.history()
        activation = next(a for a in history if a.context == CONTEXT)
        result = diff_contexts(PREVIOUS, CONTEXT, await source.load_for_diff(PREVIOUS, CONTEXT))
        catalog = await source.catalog(new_reference_files(result))
        await source.aclose()
    diff = ActivationDiff("jwst", server_url, "latest", activation, PREVIOUS, result.changes, catalog)
    sub = subscription_from_config("sub0", subscriber_from_json({"email": ["sub0@bench.invalid"], "instruments": ["nirspec"]}))
    [(_, notice)] = notices_for(diff, [sub])
    msg = email_message(notice, sender=SENDER, to=["sub0@bench.invalid"], message_id="<x@bench.invalid>",
                        date=datetime.now(UTC), list_id="crdswatch-sub0.bench.invalid",
                        unsubscribe_url="https://crdswatch.bench.invalid/unsubscribe?token=" + "x" * 80)
    return msg.as_bytes()


# ------------------------------------------------------------------ one crdswatch case (own process)


def _empty_database(url: str) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    engine.dispose()


def _outbox_bytes(store: Any) -> tuple[int, int]:
    """(bytes of the deliveries table and its indexes, bytes of the activations table)."""
    from sqlalchemy import text

    if store.engine.dialect.name == "sqlite":
        raw = store.engine.raw_connection()  # outside any transaction: dbstat reads the main file
        try:
            raw.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            sizes = dict(raw.execute("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name").fetchall())
        finally:
            raw.close()
        outbox = sum(v for k, v in sizes.items() if "deliver" in k and "attempt" not in k)
        return int(outbox), int(sizes.get("activations", 0))
    with store.engine.begin() as conn:
        row = conn.execute(text("SELECT pg_total_relation_size('deliveries'), "
                                "pg_total_relation_size('activations')")).one()
        return int(row[0]), int(row[1])


async def _loop_ticker(stats: dict[str, float]) -> None:
    while True:
        start = time.perf_counter()
        await asyncio.sleep(0.005)
        stats["max"] = max(stats["max"], time.perf_counter() - start - 0.005)


async def _start_ticker(stats: dict[str, float]) -> asyncio.Task[None]:
    """A fresh ticker, running before the phase it measures starts: what the benchmark itself did
    synchronously before (dbstat, building the senders) is not counted as the phase's hold."""
    ticker = asyncio.create_task(_loop_ticker(stats))
    await asyncio.sleep(0.006)  # its first tick is under way
    stats["max"] = 0.0
    return ticker


async def _drain_all(store: Any, senders: Any) -> int:
    """Drain the way the daemon does until nothing is due; returns the rows sent."""
    from crdswatch.app import drain as drain_mod

    if hasattr(drain_mod, "drain_until_idle"):
        # The daemon's in-flight bound for e-mail (service.daemon.Daemon.drain).
        limits = senders.concurrency() if hasattr(senders, "concurrency") else None
        report = await drain_mod.drain_until_idle(store, senders, "bench", lambda: datetime.now(UTC), limits=limits)
        return int(report.sent)
    sent = 0
    while True:
        report = await drain_mod.drain_once(store, senders, "bench", datetime.now(UTC))
        sent += report.sent
        if report.sent + report.failed + report.dead == 0:
            return sent


LIST = "jwst-nirspec"


def _subscriber_rows(size: int, members: bool, now: datetime) -> list[dict[str, Any]]:
    """Direct subscribers (as `crdswatch subscribers add` stores them), or members of LIST."""
    if not members:
        return [{"name": f"sub{i:05d}", "created_at": now, "updated_at": now,
                 "config": {"email": [f"sub{i:05d}@bench.invalid"], "instruments": ["nirspec"], "origin": "cli"}}
                for i in range(size)]
    from crdswatch.notices.codec import subscriber_to_json
    from crdswatch.notices.list_spec import ListSpec
    from crdswatch.store.lists import member_subscriber_name

    spec = ListSpec(LIST, "lists.bench.invalid", "JWST NIRSpec reference file updates", {"instruments": ["nirspec"]})
    return [{"name": member_subscriber_name(LIST, address), "created_at": now, "updated_at": now,
             "config": subscriber_to_json(spec.member_config(address))}
            for address in (f"member{i:05d}@bench.invalid" for i in range(size))]


async def run_case(database: str, size: int, port: int, pg_url: str, members: bool = False) -> dict[str, Any]:
    from sqlalchemy import insert

    from crdswatch.app.lists import list_service
    from crdswatch.app.poll import Watch, poll_once
    from crdswatch.config import Settings
    from crdswatch.devtools.bundled import extract_bundled
    from crdswatch.devtools.replay import ReplayServer
    from crdswatch.render.email import warm_templates
    from crdswatch.service.collector import settle_collector
    from crdswatch.service.runtime import ChannelSenders
    from crdswatch.sources.crds import CrdsSource
    from crdswatch.store import Store
    from crdswatch.store.schema import subscribers

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        url = f"sqlite:///{tmp}/state.db" if database == "sqlite" else pg_url
        if database != "sqlite":
            _empty_database(url)
        data = extract_bundled(tmp / "b")
        with ReplayServer(data / "mappings", data / "config" / "server_config", upto=PREVIOUS) as srv:
            store = Store.open(url)
            rows = _subscriber_rows(size, members, datetime.now(UTC))
            with store.engine.begin() as conn:
                conn.execute(insert(subscribers), rows)
            del rows
            settings = Settings(
                state={"database": url},
                smtp={"host": "127.0.0.1", "port": port, "security": "none", "sender": SENDER, "max_connections": 4},
                http={"public_url": "https://crdswatch.bench.invalid", "unsubscribe_secret": "bench-" + "s" * 32},
                **({"inbound": {"domain": "lists.bench.invalid", "token_secret": "bench-" + "t" * 32},
                    "lists": [{"name": LIST, "description": "JWST NIRSpec reference file updates",
                               "instruments": ["nirspec"]}]} if members else {}),
            )
            source = CrdsSource(srv.url, "jwst", tmp / "cache", fits_fallback=False)
            watch = Watch(source)
            warm_templates()  # as service.daemon.Daemon.run does at start
            settle_collector()  # what the process built so far frozen, as service.daemon.Daemon.run does once started
            await poll_once(watch, store, datetime.now(UTC))  # baseline at jwst_0540
            outbox_before, activations_before = _outbox_bytes(store)
            srv.activate(CONTEXT)
            stats = {"max": 0.0}
            ticker = await _start_ticker(stats)
            start = time.perf_counter()
            report = await poll_once(watch, store, datetime.now(UTC))
            queue_s = time.perf_counter() - start
            queue_stall = stats["max"]
            ticker.cancel()
            assert report.processed == [CONTEXT], report
            outbox_after, activations_after = _outbox_bytes(store)  # synchronous: between the measured phases
            senders = ChannelSenders(settings, store)
            senders.lists = list_service(settings, store)  # as service.daemon.Daemon does
            import crdswatch.app.drain  # noqa: F401 - imported by the daemon at start, not by its first drain
            stats = {"max": 0.0}
            ticker = await _start_ticker(stats)
            start, cpu = time.perf_counter(), time.process_time()
            sent = await _drain_all(store, senders)
            drain_s, drain_cpu = time.perf_counter() - start, time.process_time() - cpu
            drain_stall = stats["max"]
            ticker.cancel()
            await senders.aclose()
            await source.aclose()
            counts = store.counts()
            store.close()
    return {
        "database": database + (" (list)" if members else ""), "subscribers": size, "queued": report.queued, "sent": sent, "counts": counts,
        "queue_s": queue_s, "queue_stall_ms": queue_stall * 1000, "drain_s": drain_s,
        "drain_stall_ms": drain_stall * 1000, "msg_per_s": sent / drain_s if drain_s else 0.0,
        "drain_cpu_us_per_msg": drain_cpu / max(1, sent) * 1e6,
        "outbox_bytes_per_row": (outbox_after - outbox_before) / max(1, report.queued),
        "activation_bytes": activations_after - activations_before,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


# ------------------------------------------------------------------ the run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,10000")
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--pg-url", default=DEFAULT_PG)
    parser.add_argument("--naive", type=int, default=2000, help="messages the naive sender sends (each run)")
    parser.add_argument("--case-timeout", type=float, default=1200)
    parser.add_argument("--list-members", type=int, default=0, help="also a SQLite case of N list members")
    parser.add_argument("--case", help=argparse.SUPPRESS)  # internal: DATABASE:SIZE:PORT[:list]
    args = parser.parse_args()
    if args.case:
        database, size, port, *kind = args.case.split(":")
        print(json.dumps(asyncio.run(run_case(database, int(size), int(port), args.pg_url, kind == ["list"]))))
        return
    with tempfile.TemporaryDirectory() as tmp, Sink() as sink:
        message = asyncio.run(_one_message(Path(tmp)))
        print(f"notice: {CONTEXT} for a NIRSpec subscriber, {len(message) / 1024:.1f} KiB per message; "
              f"sink on 127.0.0.1:{sink.port}")
        naive = [naive_send(message, sink.port, args.naive)]
        print(f"naive smtplib, one connection per message: {naive[0]:.0f} msg/s ({args.naive} messages)")
        results = []
        cases = [f"{database}:{size}" for database in args.databases.split(",") for size in args.sizes.split(",")]
        cases += [f"sqlite:{args.list_members}:list"] if args.list_members else []
        for case in cases:
            database, size, *kind = case.split(":")
            before = sink.count
            proc = subprocess.run([sys.executable, __file__, "--case", ":".join([database, size, str(sink.port), *kind]),
                                   "--pg-url", args.pg_url], check=False, capture_output=True, text=True,
                                  timeout=args.case_timeout)
            if proc.returncode != 0:
                print(f"{database} {size}: FAILED\n{proc.stderr[-3000:]}")
                continue
            result = json.loads(proc.stdout.strip().splitlines()[-1])
            result["sink_received"] = sink.count - before
            results.append(result)
            _print_case(result, naive[0])
        naive.append(naive_send(message, sink.port, args.naive))
        mean = sum(naive) / len(naive)
        print(f"naive smtplib again: {naive[1]:.0f} msg/s; mean {mean:.0f} msg/s")
        print()
        print("| database | subscribers | crdswatch msg/s | naive msg/s | ratio | queue s | loop held ms "
              "(queue / drain) | peak RSS MB | outbox B/row | activation copy KB |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for r in results:
            print(f"| {r['database']} | {r['subscribers']:,} | {r['msg_per_s']:.0f} | {mean:.0f} | "
                  f"{r['msg_per_s'] / mean:.2f}x | {r['queue_s']:.2f} | {r['queue_stall_ms']:.0f} / "
                  f"{r['drain_stall_ms']:.0f} | {r['peak_rss_mb']:.0f} | {r['outbox_bytes_per_row']:.0f} | "
                  f"{r['activation_bytes'] / 1024:.0f} |")


def _print_case(r: dict[str, Any], naive: float) -> None:
    ok = "ok" if r["sent"] == r["queued"] == r["sink_received"] else "MISMATCH"
    print(f"{r['database']:<10} {r['subscribers']:>6}: queued {r['queued']} in {r['queue_s']:.2f} s "
          f"(loop held at most {r['queue_stall_ms']:.0f} ms); sent {r['sent']} in {r['drain_s']:.1f} s = "
          f"{r['msg_per_s']:.0f} msg/s ({r['msg_per_s'] / naive:.2f}x naive; CPU {r['drain_cpu_us_per_msg']:.0f} us/msg), "
          f"loop held at most "
          f"{r['drain_stall_ms']:.0f} ms; peak RSS {r['peak_rss_mb']:.0f} MB; outbox "
          f"{r['outbox_bytes_per_row']:.0f} B/row + activation {r['activation_bytes'] / 1024:.0f} KB; "
          f"sink got {r['sink_received']} [{ok}]", flush=True)


if __name__ == "__main__":
    main()
