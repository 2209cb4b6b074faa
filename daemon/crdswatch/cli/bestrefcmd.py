"""`crdswatch bestref`: the reference files a dataset gets under a context, as crds would choose them."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from crdswatch.cli.common import JsonOpt, MappingsOpt, ServerOpt, emit_json, fail
from crdswatch.errors import CrdswatchError

__all__ = ["load_rules", "register"]


def load_rules(context: str, mappings: Path | None, server: str | None, instrument: str | None) -> Any:
    """A `BoundContext` over local mappings or the needed mappings from a server."""
    from crdswatch.contexts.bestref import Rules
    from crdswatch.contexts.library import MappingLibrary, observatory_of, resolve_mappings_dir

    observatory = observatory_of(context)
    if mappings is not None:
        from crdswatch.contexts.parsedcache import ParsedCache, default_cache_root

        library = MappingLibrary.from_dir(resolve_mappings_dir(mappings, observatory),
                                          cache=ParsedCache(default_cache_root()))
    else:
        from crdswatch.sources.remote_context import fetch_context_mappings

        wanted = {instrument.lower()} if instrument else None
        library = fetch_context_mappings(str(server), observatory, context, wanted)
    return Rules(library).context(context)


def _instrument_of(header: dict[str, Any]) -> str | None:
    for key, value in header.items():
        if key.upper() in ("INSTRUME", "META.INSTRUMENT.NAME"):
            return str(value)
    return None


def bestref(
    context: Annotated[str, typer.Argument(help="Context, e.g. jwst_0541.pmap or hst_0729.pmap")],
    mappings: MappingsOpt = None,
    server: ServerOpt = None,
    param: Annotated[list[str] | None, typer.Option(
        "--param", "-p", help="Dataset parameter KEY=VALUE (FITS keyword or JWST data-model path); repeatable.")] = None,
    header: Annotated[Path | None, typer.Option(
        "--header", help="Read the parameters from this dataset FITS file (needs the [fits] extra).")] = None,
    reftype: Annotated[list[str] | None, typer.Option(
        "--reftype", "-t", help="Only this reference type (e.g. dark); repeatable. Default: every type.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """The reference file each type selects for a dataset, exactly as crds.getrecommendations would.

    Examples:

      crdswatch bestref jwst_0541.pmap --mappings ~/crds_cache -p INSTRUME=MIRI -p EXP_TYPE=MIR_MRS
        -p DETECTOR=MIRIFULONG -p DATE-OBS=2019-03-01 -p TIME-OBS=00:00:00 --reftype dark

      crdswatch bestref hst_0729.pmap --server https://hst-crds.stsci.edu --header j8bt06o6q_raw.fits --json

    Each type gets a file name, N/A (does not apply to this dataset), or no match with the reason.
    JSON: {"context", "instrument", "bestrefs": {type: file | "N/A" | null}, "errors": {type: reason}}.
    Exit status: 0 answered, 2 error.
    """
    from crdswatch.contexts.bestref import bestrefs
    from crdswatch.sources.datasetheader import parse_params, read_fits_dataset_header

    if (mappings is None) == (server is None):
        fail("give exactly one of --mappings DIR or --server URL")
    if bool(param) == (header is not None):
        fail("give the dataset as --param KEY=VALUE ... or as --header FILE.fits (one of them)")
    try:
        values = read_fits_dataset_header(header) if header is not None else parse_params(param or [])
        bound = load_rules(context, mappings, server, _instrument_of(values))
        result = bestrefs(bound, values, reftype or None)
    except CrdswatchError as exc:
        fail(str(exc))
    if as_json:
        emit_json(result.to_json())
        return
    width = max((len(t) for t in result.bestrefs), default=0)
    lines = [f"{result.context}  {result.instrument}"]
    for reftype_name, value in result.bestrefs.items():
        shown = value if value is not None else f"no match: {result.errors.get(reftype_name, '').strip()}"
        lines.append(f"  {reftype_name.ljust(width)}  {shown}")
    sys.stdout.write("\n".join(lines) + "\n")


def register(app: typer.Typer) -> None:
    app.command("bestref")(bestref)
