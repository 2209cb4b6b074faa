"""Command line: commands only, no logic; heavy libraries are imported inside the commands."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from crdswatch.cli import bestrefcmd, demo, lists, notices, offline, ops, stalecmd, status
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


def _print_version(value: bool) -> None:
    if value:
        from crdswatch import __version__

        typer.echo(f"crdswatch {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", help="Print the version and exit.", is_eager=True, callback=_print_version)
    ] = False,
) -> None:
    """Watch CRDS servers and notify subscribers of reference-file changes."""


# Explicit registration, in the order `--help` lists them.
offline.register(app)
bestrefcmd.register(app)
stalecmd.register(app)
demo.register(app)
ops.register(app)
status.register(app)
notices.register(app)
lists.register(app)


def main() -> None:
    try:
        app()
    except CrdswatchError as exc:  # an error a command did not catch still gets a clear one-liner
        typer.echo(f"crdswatch: error: {exc}", err=True)
        sys.exit(2)
