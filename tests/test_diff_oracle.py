"""Our diff equals `crds diff --brief --squash-tuples` on every activated pair of real JWST contexts."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

import pytest

from crdswatch.contexts.diff import diff_contexts
from crdswatch.contexts.history import load_server_config
from crdswatch.contexts.library import MappingLibrary
from crdswatch.devtools.bundled import crds_cache_layout

ORACLE = Path(__file__).parent / "support" / "crds_oracle.py"
SPANS = [
    ("jwst_0100.pmap", "jwst_0200.pmap"),
    ("jwst_0300.pmap", "jwst_0541.pmap"),
    ("jwst_0000.pmap", "jwst_0541.pmap"),
    ("jwst_0541.pmap", "jwst_0300.pmap"),  # a revert, read backwards
]


@pytest.fixture(scope="module")
def pairs(jwst_server_config: Path) -> list[tuple[str, str]]:
    contexts = [a.context for a in load_server_config(jwst_server_config).activations()]
    return list(itertools.pairwise(contexts)) + SPANS


@pytest.fixture(scope="module")
def oracle(jwst_data: Path, pairs: list[tuple[str, str]], tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = crds_cache_layout(tmp_path_factory.mktemp("crdscache"), jwst_data)
    out = root / "expected.json"
    args = [name for pair in pairs for name in pair]
    subprocess.run([sys.executable, str(ORACLE), str(root), str(out), *args], check=True, timeout=600)
    return json.loads(out.read_text())


def test_every_activated_pair_and_spans_match_crds(
    oracle: dict, pairs: list[tuple[str, str]], jwst_mappings: Path
) -> None:
    library = MappingLibrary.from_dir(jwst_mappings)
    assert len(pairs) == 149 + len(SPANS)
    mismatches = []
    total = 0
    for old, new in pairs:
        expected = oracle[f"{old} {new}"]
        got = [change.line for change in diff_contexts(old, new, library).changes]
        total += len(expected)
        if sorted(got) != sorted(expected):
            mismatches.append((old, new, sorted(set(expected) - set(got))[:3], sorted(set(got) - set(expected))[:3]))
        elif got != expected:
            mismatches.append((old, new, "same lines, different order", None))
    assert not mismatches, mismatches
    assert total > 9000  # the comparison really covered the history's thousands of rule changes


def test_the_oracle_sees_what_a_person_would(oracle: dict) -> None:
    # Guard against comparing two empty outputs: the 0541 activation widened NIRSpec rules.
    lines = oracle["jwst_0540.pmap jwst_0541.pmap"]
    assert len(lines) == 83
    assert any("deleted Match rule for jwst_nirspec_dark_0022.fits" in line for line in lines)
