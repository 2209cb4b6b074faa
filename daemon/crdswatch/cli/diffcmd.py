"""`crdswatch diff` itself, free of the CLI framework so the offline fast path can run it too."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from crdswatch.errors import CrdswatchError

__all__ = ["emit_json", "run_diff"]


def emit_json(data: Any) -> None:
    # Indented for people at a terminal; compact (C encoder, several times faster) for pipes.
    indent = 2 if sys.stdout.isatty() else None
    sys.stdout.write(json.dumps(data, indent=indent, ensure_ascii=False) + "\n")


def run_diff(old: str, new: str, mappings: Path | None, server: str | None, as_json: bool, no_cache: bool) -> int:
    """Print the diff; exit status 0 no differences, 1 differences, 2 error (message on stderr)."""
    from crdswatch.contexts.diff import diff_contexts
    from crdswatch.contexts.library import MappingLibrary, observatory_of, resolve_mappings_dir

    if (mappings is None) == (server is None):
        return _error("give exactly one of --mappings DIR or --server URL")
    try:
        observatory = observatory_of(old)
        if mappings is not None:
            from crdswatch.contexts.parsedcache import ParsedCache, default_cache_root

            parsed = ParsedCache(None if no_cache else default_cache_root())
            library = MappingLibrary.from_dir(resolve_mappings_dir(mappings, observatory), cache=parsed)
        else:
            from crdswatch.sources.remote import fetch_diff_mappings

            library = fetch_diff_mappings(str(server), observatory, old, new)
        result = diff_contexts(old, new, library)
    except CrdswatchError as exc:
        return _error(str(exc))
    if as_json:
        emit_json(result.to_json())
    else:
        from crdswatch.render.report import format_diff

        sys.stdout.write(format_diff(result))
    return 1 if result.changes else 0


def _error(message: str) -> int:
    sys.stderr.write(f"crdswatch: error: {message}\n")
    return 2
