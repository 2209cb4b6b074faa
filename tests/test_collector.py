"""service.collector: what the daemon does to the cyclic collector once started (in a process of
its own here: the test session's collector stays as it is)."""

from __future__ import annotations

import json
import subprocess
import sys

SCRIPT = """
import gc, json
before = gc.get_threshold()
from crdswatch.service.collector import FULL_EVERY, settle_collector
settle_collector()
print(json.dumps({"before": before, "after": gc.get_threshold(), "frozen": gc.get_freeze_count(), "full": FULL_EVERY}))
"""


def test_settle_collector_freezes_start_up_and_makes_full_collections_rarer() -> None:
    out = json.loads(subprocess.run([sys.executable, "-c", SCRIPT], check=True, capture_output=True, text=True).stdout)
    young, middle, full = out["before"]
    assert out["after"] == [young, middle, out["full"]] and out["full"] > full
    assert out["frozen"] > 1_000  # the modules, classes and functions imported so far
