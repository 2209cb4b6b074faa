"""Run the reference implementation (`crds diff --brief --squash-tuples`) over pairs of contexts.

Runs as a separate process: crds reads its configuration from the environment and keeps global
caches, and neither should leak into the test process.
Usage: python crds_oracle.py CRDS_CACHE_ROOT OUT.json OLD NEW [OLD NEW ...]
"""

from __future__ import annotations

import json
import os
import sys


def main(root: str, out: str, names: list[str]) -> None:
    os.environ.update(
        CRDS_PATH=root, CRDS_MODE="local", CRDS_OBSERVATORY="jwst",
        CRDS_SERVER_URL="https://jwst-crds.stsci.edu",
    )
    from crds import diff as cdiff

    folder = os.path.join(root, "mappings", "jwst")
    results = {}
    for old, new in zip(names[::2], names[1::2]):
        differ = cdiff.MappingDifferencer(
            "jwst", os.path.join(folder, old), os.path.join(folder, new),
            include_header_diffs=True, hide_boring_diffs=True, lowest_mapping_only=True,
            remove_paths=True, squash_tuples=True,
        )
        lines = []
        # The same steps, in the same order, as crds.diff.MappingDifferencer.difference() with --brief.
        for diff in sorted(cdiff.remove_boring(differ.mapping_diffs())):
            diff = cdiff.remove_diff_paths(cdiff.simplify_to_lowest_mapping(cdiff.unquote_diff(diff)))
            lines.append(differ.squash_diff_tuples(diff))
        results[f"{old} {new}"] = lines
    with open(out, "w") as handle:
        json.dump(results, handle)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3:])
