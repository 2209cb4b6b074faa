"""Command line: commands only, no logic; heavy libraries are imported inside the commands."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn, Optional

import typer

from crdswatch.errors import CrdswatchError

__all__ = ["app", "main"]

app = typer.Typer(
    name="crdswatch",
    help=(
        "Watch CRDS servers for newly activated contexts and tell the people whose reference files "
        "changed.\n\nOffline examples (bundled real JWST history):\n\n"
        "  crdswatch diff jwst_0540.pmap jwst_0541.pmap --mappings DIR\n\n"
        "  crdswatch history --mappings DIR --server-config FILE"
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

MappingsOpt = Annotated[
    Optional[Path],
    typer.Option("--mappings", help="Folder of mapping files, or a CRDS cache root with mappings/<obs>/."),
]
ServerOpt = Annotated[
    Optional[str], typer.Option("--server", help="CRDS server URL, e.g. https://jwst-crds.stsci.edu")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout.")]


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.")] = False,
) -> None:
    """Watch CRDS servers and notify subscribers of reference-file changes."""
    if version:
        from crdswatch import __version__

        typer.echo(f"crdswatch {__version__}")
        raise typer.Exit(0)


def fail(message: str, code: int = 2) -> NoReturn:
    typer.echo(f"crdswatch: error: {message}", err=True)
    raise typer.Exit(code)


def _emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


@app.command()
def diff(
    old: Annotated[str, typer.Argument(help="Older context or mapping, e.g. jwst_0540.pmap")],
    new: Annotated[str, typer.Argument(help="Newer context or mapping, e.g. jwst_0541.pmap")],
    mappings: MappingsOpt = None,
    server: ServerOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Differences between two contexts, down to reference-file rules, as `crds diff` finds them.

    Exit status: 0 no differences, 1 differences, 2 error.
    """
    from crdswatch.diff import diff_contexts
    from crdswatch.library import MappingLibrary, observatory_of, resolve_mappings_dir

    if (mappings is None) == (server is None):
        fail("give exactly one of --mappings DIR or --server URL")
    try:
        observatory = observatory_of(old)
        if mappings is not None:
            library = MappingLibrary.from_dir(resolve_mappings_dir(mappings, observatory))
        else:
            assert server is not None
            library = _server_library(server, observatory, old, new)
        result = diff_contexts(old, new, library)
    except CrdswatchError as exc:
        fail(str(exc))
    if as_json:
        _emit_json(result.to_json())
    else:
        from crdswatch.textreport import format_diff

        sys.stdout.write(format_diff(result))
    raise typer.Exit(1 if result.changes else 0)


def _server_library(server: str, observatory: str, old: str, new: str) -> Any:
    from crdswatch.sources.remote import fetch_diff_mappings

    return fetch_diff_mappings(server, observatory, old, new)


def main() -> None:
    try:
        app()
    except CrdswatchError as exc:  # an error a command did not catch still gets a clear one-liner
        typer.echo(f"crdswatch: error: {exc}", err=True)
        sys.exit(2)
