"""Console entry point: `--version` and the plain offline `crdswatch diff` skip loading the CLI framework.

`crdswatch diff OLD NEW --mappings DIR [--json] [--no-cache]` is the command scripts call in
loops (and the one benchmarked against `crds diff`); the typer app costs ~45 ms to import, as
much as the diff itself. Anything else — other commands, --help, --server, any unusual
spelling — goes to the full command line, which runs the same `run_diff`.
"""

from __future__ import annotations

import sys
from pathlib import Path

__all__ = ["main"]

_FLAGS = {"--json": "as_json", "--no-cache": "no_cache", "--brief": "brief", "--squash-tuples": "squash"}


def _fast_diff(argv: list[str]) -> int | None:
    if len(argv) < 5 or argv[0] != "diff" or argv[3] != "--mappings":
        return None
    old, new, folder, rest = argv[1], argv[2], argv[4], argv[5:]
    if old.startswith("-") or new.startswith("-") or folder.startswith("-"):
        return None
    if any(flag not in _FLAGS for flag in rest) or len(set(rest)) != len(rest):
        return None
    from crdswatch.cli.diffcmd import run_diff

    flags = {name: option in rest for option, name in _FLAGS.items()}
    return run_diff(old, new, Path(folder), None, flags["as_json"], flags["no_cache"], flags["brief"], flags["squash"])


def main() -> None:
    if sys.argv[1:] == ["--version"]:  # what scripts and packagers ask first: no framework for it
        from crdswatch import __version__

        sys.stdout.write(f"crdswatch {__version__}\n")
        sys.exit(0)
    status = _fast_diff(sys.argv[1:])
    if status is None and sys.argv[1:2] == ["outbox"]:
        from crdswatch.cli.fast import fast_outbox

        status = fast_outbox(sys.argv[1:])
    if status is not None:
        sys.exit(status)
    if sys.argv[1:2] == ["run"]:  # the daemon: what loading the CLI logs or warns waits for its log format
        from crdswatch.service.logs import buffer_early

        buffer_early()
    from crdswatch.cli.main import main as full

    full()
