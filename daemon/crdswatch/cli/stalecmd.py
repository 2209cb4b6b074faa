"""`crdswatch stale`: which recorded reference files a newer context would change, per dataset file."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from crdswatch.cli.common import JsonOpt, MappingsOpt, ServerOpt, emit_json, fail
from crdswatch.errors import CrdswatchError

__all__ = ["register"]

_FITS_SUFFIXES = (".fits", ".fit", ".fts", ".fits.gz")
_MAX_CONTEXTS = 200  # contexts downloaded for one run with --server (each: one instrument's rules)


def _files(paths: list[Path]) -> list[Path]:
    out: list[Path] = []
    for path in paths:
        if path.is_dir():
            out.extend(sorted(p for p in path.rglob("*") if p.is_file() and p.name.lower().endswith(_FITS_SUFFIXES)))
        else:
            out.append(path)
    return out


def _history(mappings: Path | None, server: str | None, observatory: str) -> tuple[list[str], str | None]:
    """Activated contexts oldest first, and the default context, from the server or a saved config."""
    from crdswatch.contexts.history import load_server_config

    if server is not None:
        import asyncio

        from crdswatch.sources.crds_rpc import CrdsRpcClient

        async def ask() -> tuple[list[str], str]:
            async with CrdsRpcClient(server) as client:
                history = await client.get_context_history(observatory)
                return [a.context for a in history], await client.get_default_context(observatory)

        return asyncio.run(ask())
    assert mappings is not None
    for candidate in (mappings / "config" / observatory / "server_config", mappings.parent / "config" / "server_config",
                      mappings.parent / "config" / observatory / "server_config", mappings / "config" / "server_config"):
        if candidate.is_file():
            config = load_server_config(candidate)
            return [a.context for a in config.activations()], config.default_context()
    return [], None


def stale(
    paths: Annotated[list[Path], typer.Argument(help="Dataset FITS files or folders of them.")],
    context: Annotated[str | None, typer.Option(
        "--context", help="Context to compare with (default: the server's latest; with --mappings, the "
                          "saved config's, else the newest .pmap there).")] = None,
    mappings: MappingsOpt = None,
    server: ServerOpt = None,
    observatory: Annotated[str, typer.Option(help="Observatory, when --context is not given.")] = "jwst",
    as_json: JsonOpt = False,
) -> None:
    """Reference files recorded in datasets (CRDS_CTX, R_<TYPE> / <TYPE>FILE) that a context would change.

    For every reference type whose file differs, lists the activations after the dataset's own
    CRDS_CTX that changed it. Folders are walked for FITS files, with a progress bar.

    Examples:

      crdswatch stale jw01234001001_01101_00001_mirifulong_rate.fits --server https://jwst-crds.stsci.edu

      crdswatch stale ./my_program/ --context jwst_0541.pmap --mappings ~/crds_cache --json

    Exit status: 0 nothing stale, 1 something is, 2 error.
    """
    from crdswatch.contexts.bestref import Rules
    from crdswatch.contexts.library import MappingLibrary, observatory_of, resolve_mappings_dir
    from crdswatch.notices.stale import StaleReport, stale_report
    from crdswatch.sources.datasetheader import DatasetHeaderError, read_fits_dataset_header

    if (mappings is None) == (server is None):
        fail("give exactly one of --mappings DIR or --server URL")
    files = _files(paths)
    if not files:
        fail("no FITS files found in " + ", ".join(str(p) for p in paths))
    if context is not None:
        observatory = observatory_of(context)
    try:
        history, default = _history(mappings, server, observatory)
        if mappings is not None:
            folder = resolve_mappings_dir(mappings, observatory)
            library: Any = MappingLibrary.from_dir(folder)
            if context is None:
                pmaps = sorted(p.name for p in folder.glob(f"{observatory}_*.pmap"))
                context = default if default and (folder / default).is_file() else (pmaps[-1] if pmaps else None)
        else:

            context = context or default
            library = None
        if context is None:
            fail("no context: give --context")
        headers: list[tuple[Path, dict[str, Any] | None, str | None]] = []
        for file in _progress(files, "reading headers"):
            try:
                headers.append((file, read_fits_dataset_header(file), None))
            except DatasetHeaderError as exc:
                headers.append((file, None, str(exc)))
        if library is None:
            needed = {context}
            for _f, h, _e in headers:
                recorded = str(h.get("CRDS_CTX") or "") if h else ""
                if recorded:
                    needed |= {recorded, *_between(history, recorded, context, None)}
            if len(needed) > _MAX_CONTEXTS:
                fail(f"the datasets span {len(needed)} contexts; at most {_MAX_CONTEXTS} are fetched (give --context)")
            library = _server_library(str(server), observatory, sorted(needed), history, context, headers)
        rules = Rules(library)
        target = rules.context(context)
        reports: list[StaleReport] = []
        for file, header, error in _progress(headers, "checking"):
            if header is None:
                reports.append(StaleReport(str(file), context, None, error=error))
                continue
            between = _between(history, str(header.get("CRDS_CTX") or ""), context, library)
            reports.append(stale_report(str(file), header, target, between, rules.context))
    except CrdswatchError as exc:
        fail(str(exc))
    _emit(reports, context, as_json)
    if any(r.error for r in reports):
        raise typer.Exit(2)
    raise typer.Exit(1 if any(r.stale for r in reports) else 0)


def _between(history: list[str], recorded: str, target: str, library: Any) -> list[str]:
    if target not in history or not recorded:
        return []
    end = len(history) - 1 - history[::-1].index(target)
    if recorded in history:
        start = history.index(recorded) + 1
    else:  # a context that was never activated (a build or edit context): what came after it by serial
        start = next((i for i, c in enumerate(history) if c > recorded), len(history))
    return [c for c in history[start:end + 1] if library is None or c in library]


def _server_library(server: str, observatory: str, contexts: list[str], history: list[str], target: str,
                    headers: list[Any]) -> Any:
    from crdswatch.sources.remote_context import fetch_context_mappings

    library = None
    instruments = {str(h.get("INSTRUME", "")).lower() for _f, h, _e in headers if h} - {""}
    for name in contexts:
        fetched = fetch_context_mappings(server, observatory, name, instruments or None)
        if library is None:
            library = fetched
        else:
            for key in list(fetched):
                library.add(fetched[key])
    return library


def _progress(items: list[Any], what: str) -> Any:
    if len(items) < 2 or not sys.stderr.isatty():
        return items
    from rich.progress import track

    return track(items, description=what, console=None, transient=True)


def _emit(reports: list[Any], context: str, as_json: bool) -> None:
    if as_json:
        emit_json({"context": context, "files": [r.to_json() for r in reports]})
        return
    lines: list[str] = []
    for report in reports:
        if report.error:
            lines.append(f"{report.file}: error: {report.error}")
        elif not report.stale:
            lines.append(f"{report.file}: up to date with {context} ({len(report.checked)} references checked)")
        else:
            lines.append(f"{report.file}: {len(report.stale)} stale under {context} (recorded {report.recorded_context})")
            for item in report.stale:
                via = f"  (changed in {', '.join(item.changed_in)})" if item.changed_in else ""
                lines.append(f"  {item.reftype.upper()}: {item.recorded} → {item.selected}{via}")
    sys.stdout.write("\n".join(lines) + "\n")


def register(app: typer.Typer) -> None:
    app.command("stale")(stale)
