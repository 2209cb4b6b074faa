"""Whole-process time of the command line: `--version`, `--help`, `diff`, `outbox --json`.

Run: .venv/bin/python bench/cli_start.py [--runs 7]

Each command runs as its own `python -m crdswatch` process, --runs times; the figure is the median
wall time (startup, imports and the work). `diff` is jwst_0540 -> jwst_0541 from the bundled
mappings with a warm parsed cache (the cache is filled by one untimed run); `outbox --json` is on
an empty, set-up SQLite database (goal <= 0.3 s), and `outbox --json --limit 10000` on one that the
real poll filled with the 10,000 rows of jwst_0541 for 10,000 NIRSpec subscribers (goal <= 2 s).
The two `outbox` cases are run on PostgreSQL too (--pg-url; the database given is emptied: use one
of its own; --pg-url '' leaves them out). A bare `python -c pass` is the floor.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GOALS = {"outbox --json": 0.3, "outbox 10,000 rows": 2.0, "outbox --json, PG": 0.3, "outbox 10,000 rows, PG": 2.0}
DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test_cli_bench"
SUBSCRIBERS = 10_000


def fill_outbox(db: str, data: Path, cache: Path) -> int:
    """Queue jwst_0541 for SUBSCRIBERS e-mail subscribers through the real poll; the rows queued."""
    import asyncio
    from datetime import UTC, datetime

    from sqlalchemy import insert

    from crdswatch.app.poll import Watch, poll_once
    from crdswatch.devtools.replay import ReplayServer
    from crdswatch.sources.crds import CrdsSource
    from crdswatch.store import Store
    from crdswatch.store.schema import subscribers

    async def fill() -> int:
        with ReplayServer(data / "mappings", data / "config" / "server_config", upto="jwst_0540.pmap") as srv:
            store = Store.open(db)
            now = datetime.now(UTC)
            with store.engine.begin() as conn:
                conn.execute(insert(subscribers), [
                    {"name": f"sub{i:05d}", "created_at": now, "updated_at": now,
                     "config": {"email": [f"sub{i:05d}@bench.invalid"], "instruments": ["nirspec"], "origin": "cli"}}
                    for i in range(SUBSCRIBERS)])
            source = CrdsSource(srv.url, "jwst", cache, fits_fallback=False)
            watch = Watch(source)
            await poll_once(watch, store, datetime.now(UTC))  # the baseline, jwst_0540
            srv.activate("jwst_0541.pmap")
            report = await poll_once(watch, store, datetime.now(UTC))
            await source.aclose()
            store.close()
            return int(report.queued)

    return asyncio.run(fill())


def timed(argv: list[str], env: dict[str, str], runs: int, ok: tuple[int, ...] = (0,)) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        proc = subprocess.run(argv, env=env, capture_output=True, check=False)
        times.append(time.perf_counter() - start)
        if proc.returncode not in ok:
            raise SystemExit(f"{' '.join(argv)}: exit {proc.returncode}\n{proc.stderr.decode()[-2000:]}")
    return statistics.median(times)


def _postgres_cases(url: str, data: Path, tmp: Path, py: list[str]) -> dict[str, tuple[list[str], tuple[int, ...]]]:
    """`outbox --json` on PostgreSQL: an empty, set-up schema of its own (named by the URL's
    options, as a deployment sharing a database would), and the public schema with 10,000 rows."""
    from sqlalchemy import create_engine, text

    from crdswatch.store import Store

    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE; CREATE SCHEMA public; "
                          "DROP SCHEMA IF EXISTS cli_empty CASCADE; CREATE SCHEMA cli_empty"))
    engine.dispose()
    empty_url = f"{url}?options=-csearch_path%3Dcli_empty"
    Store.open(empty_url).close()
    fill_outbox(url, data, tmp / "pg-fill-cache")
    empty, full = tmp / "pg-empty.toml", tmp / "pg-full.toml"
    empty.write_text(f'[state]\ndatabase = "{empty_url}"\n')
    full.write_text(f'[state]\ndatabase = "{url}"\n')
    return {"outbox --json, PG": ([*py, "outbox", "--json", "--config", str(empty)], (0,)),
            "outbox 10,000 rows, PG": ([*py, "outbox", "--json", "--limit", "10000", "--config", str(full)], (0,))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--pg-url", default=DEFAULT_PG)
    args = parser.parse_args()
    from crdswatch.devtools.bundled import extract_bundled
    from crdswatch.store import Store

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        data = extract_bundled(tmp / "b")
        db = f"sqlite:///{tmp}/state.db"
        Store.open(db).close()  # set up (migrated), no rows
        config = tmp / "crdswatch.toml"
        config.write_text(f'[state]\ndatabase = "{db}"\n')
        full_db = f"sqlite:///{tmp}/full.db"
        queued = fill_outbox(full_db, data, tmp / "fill-cache")
        full = tmp / "full.toml"
        full.write_text(f'[state]\ndatabase = "{full_db}"\n')
        env = {**os.environ, "CRDSWATCH_CACHE": str(tmp / "cache")}
        py = [sys.executable, "-m", "crdswatch"]
        diff = [*py, "diff", "jwst_0540.pmap", "jwst_0541.pmap", "--mappings", str(data / "mappings")]
        subprocess.run(diff, env=env, capture_output=True, check=False)  # warm the parsed cache
        cases = {
            "python -c pass": ([sys.executable, "-c", "pass"], (0,)),
            "--version": ([*py, "--version"], (0,)),
            "--help": ([*py, "--help"], (0,)),
            "diff": (diff, (0, 1)),
            "outbox --json": ([*py, "outbox", "--json", "--config", str(config)], (0,)),
            "outbox 10,000 rows": ([*py, "outbox", "--json", "--limit", "10000", "--config", str(full)], (0,)),
        }
        if args.pg_url:
            cases.update(_postgres_cases(args.pg_url, data, tmp, py))
        print(f"outbox filled by the poll: {queued:,} rows queued")
        print(f"median of {args.runs} runs, whole process:")
        for name, (argv, ok) in cases.items():
            median = timed(argv, env, args.runs, ok)
            goal = GOALS.get(name)
            extra = f"  (goal <= {goal} s: {median / goal:.2f}x the goal)" if goal else ""
            print(f"  {name:<24} {median:.3f} s{extra}", flush=True)


if __name__ == "__main__":
    main()
