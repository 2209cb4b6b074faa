"""Whole-process time of `crdswatch diff` vs `crds diff` on real JWST contexts; checks equal output.

Run: .venv/bin/python bench/diff_vs_crds.py [--repeats N]   (needs the test extra: crds)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from crdswatch.devtools.bundled import crds_cache_layout, extract_bundled

PAIRS = [("jwst_0300.pmap", "jwst_0541.pmap"), ("jwst_0540.pmap", "jwst_0541.pmap")]


def timed(cmd: list[str], env: dict[str, str], cwd: Path) -> tuple[float, str]:
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd, check=False)
    elapsed = time.perf_counter() - start
    if proc.returncode not in (0, 1):
        sys.exit(f"{cmd[:3]} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return elapsed, proc.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        crds_cache_layout(root, extract_bundled(root / "bundled"))
        env = {**os.environ, "CRDS_PATH": str(root), "CRDS_MODE": "local", "CRDS_OBSERVATORY": "jwst",
               "CRDS_SERVER_URL": "https://jwst-crds.stsci.edu"}
        folder = root / "mappings" / "jwst"
        ours_bin = str(Path(sys.executable).with_name("crdswatch"))
        print(f"{'pair':<32} {'crds diff':>10} {'crdswatch':>10} {'ratio':>7}  equal  lines")
        for old, new in PAIRS:
            crds_cmd = [sys.executable, "-m", "crds.diff", str(folder / old), str(folder / new),
                        "--brief", "--squash-tuples"]
            ours_cmd = [ours_bin, "diff", old, new, "--mappings", str(root), "--json"]
            crds_times, ours_times = [], []
            crds_out = ours_out = ""
            for _ in range(args.repeats):  # interleaved, so machine load hits both alike
                t, crds_out = timed(crds_cmd, env, root)
                crds_times.append(t)
                t, ours_out = timed(ours_cmd, env, root)
                ours_times.append(t)
            ours_lines = [c["line"] for c in json.loads(ours_out)["changes"]]
            equal = ours_lines == crds_out.splitlines()
            a, b = statistics.median(crds_times), statistics.median(ours_times)
            print(f"{old + ' -> ' + new:<32} {a:>9.3f}s {b:>9.3f}s {a / b:>6.1f}x  {equal!s:<5}  {len(ours_lines)}")
            if not equal:
                sys.exit("outputs differ")
        print(f"(median of {args.repeats} interleaved runs each, whole process, warm file cache)")


if __name__ == "__main__":
    main()
