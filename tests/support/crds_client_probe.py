"""Drive the real `crds` client against a server URL and print what it saw, as JSON.

Runs as a separate process: crds reads its configuration from the environment and keeps global
caches, and neither should leak into the test process.
Usage: python crds_client_probe.py SERVER_URL CRDS_PATH
"""

from __future__ import annotations

import json
import os
import sys


def main(url: str, cache: str) -> None:
    os.environ.update(CRDS_SERVER_URL=url, CRDS_PATH=cache, CRDS_MODE="remote", CRDS_OBSERVATORY="jwst")
    from crds.client import api
    from crds.core import log, rmap

    log.set_verbose(0)
    api.set_crds_server(url)
    context = api.get_default_context("jwst", "latest")
    names = api.get_mapping_names(context)
    api.dump_mappings(context)  # crds downloads every mapping from /unchecked_get and loads them
    local_names = rmap.get_cached_mapping(context).mapping_names()
    rmaps = [n for n in names if n.endswith(".rmap")][:3]
    info = api.get_file_info_map("jwst", files=[context, *rmaps, "jwst_nothing_9999.fits"])
    full = api.get_file_info_map("jwst")
    out = {
        "context": context,
        "history": [list(row) for row in api.get_context_history("jwst")],
        "names": names,
        "local_names": local_names,
        "info": info,
        "full_info_count": len(full),
        "server_info_context": api.get_server_info()["operational_context"],
        "download_metadata_count": len(api.get_download_metadata()),
    }
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
