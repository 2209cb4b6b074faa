"""Run `crds.getrecommendations` (the reference implementation) over a batch of headers.

Runs as a separate process, like crds_oracle.py: crds reads its configuration from the
environment and keeps global caches. Bad-file checks are switched off (they are about the
server's bad-files list, not selection).
Usage: python crds_oracle_bestref.py CRDS_PATH SPEC.json OUT.json
SPEC is [[id, observatory, context, header, reftypes-or-null], ...]; OUT maps id -> the
getrecommendations result ({reftype: value}) or {"error": "..."} when crds raises.
"""

from __future__ import annotations

import json
import os
import sys


def main(root: str, spec: str, out: str) -> None:
    os.environ.update(CRDS_PATH=root, CRDS_MODE="local", CRDS_ALLOW_BAD_REFERENCES="1", CRDS_ALLOW_BAD_RULES="1")
    with open(spec) as handle:
        cases = json.load(handle)
    results: dict[str, object] = {}
    for observatory in sorted({case[1] for case in cases}):
        # crds picks the observatory from the environment for each selector it builds.
        os.environ.update(CRDS_OBSERVATORY=observatory, CRDS_SERVER_URL=f"https://{observatory}-crds.stsci.edu")
        import crds
        from crds.core import log

        log.set_verbose(False)
        log.set_log_time(False)
        for ident, obs, context, header, reftypes in cases:
            if obs != observatory:
                continue
            try:
                results[ident] = crds.getrecommendations(header, reftypes=reftypes, context=context,
                                                         observatory=observatory)
            except TypeError as exc:
                # Equal-weight matches of plain files give a tuple, which crds' bad-file check
                # then chokes on; fast=True skips that check and shows what crds selected.
                found = crds.getrecommendations(header, reftypes=reftypes, context=context,
                                                observatory=observatory, fast=True)
                results[ident] = {"tuple_error": str(exc), **{k: list(v) if isinstance(v, tuple) else v
                                                              for k, v in found.items()}}
            except Exception as exc:  # noqa: BLE001 - crds refusing a header is a result
                results[ident] = {"error": f"{type(exc).__name__}: {exc}"}
    with open(out, "w") as handle:
        json.dump(results, handle, default=repr)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3])
