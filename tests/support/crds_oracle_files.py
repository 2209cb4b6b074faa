"""Run `crds diff --brief --squash-tuples` (the reference implementation) over pairs of mapping files.

Like crds_oracle.py, but for loose files of any observatory (HST, Roman, JWST) rather than a
context history: each pair names its observatory and two file paths, so synthetic rmaps can be
compared without a CRDS cache. Runs as a separate process, for the same reasons.
Usage: python crds_oracle_files.py CRDS_PATH SPEC.json OUT.json
SPEC is [[id, observatory, old_path, new_path], ...]; OUT maps id -> list of lines, or
{"error": "..."} when crds refuses the pair.
"""

from __future__ import annotations

import json
import os
import sys


def main(root: str, spec: str, out: str) -> None:
    os.environ.update(CRDS_PATH=root, CRDS_MODE="local")
    results: dict[str, object] = {}
    with open(spec) as handle:
        pairs = json.load(handle)
    for ident, observatory, old, new in pairs:
        # crds reads the observatory from the environment when it builds each selector.
        os.environ.update(CRDS_OBSERVATORY=observatory, CRDS_SERVER_URL=f"https://{observatory}-crds.stsci.edu")
        from crds import diff as cdiff

        try:
            differ = cdiff.MappingDifferencer(
                observatory, old, new, include_header_diffs=True, hide_boring_diffs=True,
                lowest_mapping_only=True, remove_paths=True, squash_tuples=True,
            )
            lines = []
            # The steps of crds.diff.MappingDifferencer.difference() with --brief, in its order.
            for diff in sorted(cdiff.remove_boring(differ.mapping_diffs())):
                diff = cdiff.remove_diff_paths(cdiff.simplify_to_lowest_mapping(cdiff.unquote_diff(diff)))
                lines.append(differ.squash_diff_tuples(diff))
            results[ident] = lines
        except Exception as exc:  # noqa: BLE001 - crds refusing a construct is a result, not a failure
            results[ident] = {"error": f"{type(exc).__name__}: {exc}"}
    with open(out, "w") as handle:
        json.dump(results, handle)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3])
