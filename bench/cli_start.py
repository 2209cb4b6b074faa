"""Whole-process time of the command line: `--version`, `--help`, `diff`, `outbox --json`.

Run: .venv/bin/python bench/cli_start.py [--runs 7]

Each command runs as its own `python -m crdswatch` process, --runs times; the figure is the median
wall time (startup, imports and the work). `diff` is jwst_0540 -> jwst_0541 from the bundled
mappings with a warm parsed cache (the cache is filled by one untimed run); `outbox --json` is on
an empty, set-up SQLite database (goal <= 0.3 s). A bare `python -c pass` is the floor.
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

GOALS = {"outbox --json": 0.3}


def timed(argv: list[str], env: dict[str, str], runs: int, ok: tuple[int, ...] = (0,)) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        proc = subprocess.run(argv, env=env, capture_output=True, check=False)
        times.append(time.perf_counter() - start)
        if proc.returncode not in ok:
            raise SystemExit(f"{' '.join(argv)}: exit {proc.returncode}\n{proc.stderr.decode()[-2000:]}")
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=7)
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
        }
        print(f"median of {args.runs} runs, whole process:")
        for name, (argv, ok) in cases.items():
            median = timed(argv, env, args.runs, ok)
            goal = GOALS.get(name)
            extra = f"  (goal <= {goal} s: {median / goal:.2f}x the goal)" if goal else ""
            print(f"  {name:<16} {median:.3f} s{extra}", flush=True)


if __name__ == "__main__":
    main()
