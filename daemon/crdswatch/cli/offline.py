"""Offline and read-only commands: diff, history, replay-server."""

from __future__ import annotations

import itertools
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from crdswatch.cli.common import JsonOpt, MappingsOpt, ServerOpt, emit_json, fail
from crdswatch.errors import CrdswatchError

__all__ = ["register"]


def diff(
    old: Annotated[str, typer.Argument(help="Older context or mapping, e.g. jwst_0540.pmap")],
    new: Annotated[str, typer.Argument(help="Newer context or mapping, e.g. jwst_0541.pmap")],
    mappings: MappingsOpt = None,
    server: ServerOpt = None,
    as_json: JsonOpt = False,
    no_cache: Annotated[
        bool, typer.Option("--no-cache", help="Do not read or write the parsed-mapping cache.")
    ] = False,
    brief: Annotated[
        bool, typer.Option("--brief", help="One line per change, exactly as `crds diff --brief` prints it.")
    ] = False,
    squash: Annotated[
        bool, typer.Option("--squash-tuples", help="With --brief: as `crds diff --brief --squash-tuples`.")
    ] = False,
) -> None:
    """Differences between two contexts, down to reference-file rules, as `crds diff` finds them.

    OLD and NEW are context (.pmap) names such as jwst_0540.pmap (or two .imap/.rmap names),
    or paths such as path/to/jwst_0541.pmap: as with `crds diff`, a path names that very file,
    and the mappings it names come from --mappings (by default $CRDS_PATH, else the file's folder).

    Examples:

      crdswatch diff jwst_0540.pmap jwst_0541.pmap --mappings ~/crds_cache

      crdswatch diff jwst_0540.pmap jwst_0541.pmap --server https://jwst-crds.stsci.edu --json

      crdswatch diff ~/crds_cache/mappings/jwst/jwst_0540.pmap ~/crds_cache/mappings/jwst/jwst_0541.pmap --brief

    With --server only the mappings that differ are downloaded, verified (sha1) and cached.
    Parsed mappings are cached under $CRDSWATCH_CACHE (default ~/.cache/crdswatch).

    Exit status: 0 no differences, 1 differences, 2 error.
    """
    from crdswatch.cli.diffcmd import run_diff

    raise typer.Exit(run_diff(old, new, mappings, server, as_json, no_cache, brief, squash))


def history(
    mappings: MappingsOpt = None,
    server_config: Annotated[
        Path | None, typer.Option("--server-config", help="A saved get_server_info() reply (crds cache config).")
    ] = None,
    server: ServerOpt = None,
    observatory: Annotated[str, typer.Option(help="Observatory, for --server.")] = "jwst",
    as_json: JsonOpt = False,
) -> None:
    """Context activations with dates and descriptions, oldest first.

    With --mappings, each activation also lists the instruments and reference types it changed.
    """
    from crdswatch.contexts.history import load_server_config

    if (server_config is None) == (server is None):
        fail("give --server-config FILE (optionally with --mappings DIR) or --server URL")
    try:
        if server_config is not None:
            config = load_server_config(server_config)
            observatory = config.observatory or observatory
            activations = config.activations()
        else:
            assert server is not None
            activations = _server_history(server, observatory)
        affected = _affected_by(activations, mappings, observatory) if mappings is not None else None
    except (CrdswatchError, OSError) as exc:
        fail(str(exc))
    rows = [
        {**a.__dict__, **({"affected": affected[i]} if affected is not None else {})}
        for i, a in enumerate(activations)
    ]
    if as_json:
        emit_json({"observatory": observatory, "activations": rows})
        return
    from crdswatch.render.report import format_history

    sys.stdout.write(format_history(rows))


def _affected_by(activations: list[Any], folder: Path, observatory: str) -> list[Any]:
    """Per activation, {instrument: [reftypes]} changed since the previous one (None if unknown)."""
    from crdswatch.contexts.diff import diff_contexts
    from crdswatch.contexts.library import MappingLibrary, resolve_mappings_dir

    library = MappingLibrary.from_dir(resolve_mappings_dir(folder, observatory))
    out: list[Any] = [None]
    for before, after in itertools.pairwise(activations):
        try:
            result = diff_contexts(before.context, after.context, library)
        except CrdswatchError as exc:
            typer.echo(f"crdswatch: warning: {after.context}: {exc}", err=True)
            out.append(None)
            continue
        found: dict[str, set[str]] = {}
        for change in result.changes:
            if change.instrument:
                found.setdefault(change.instrument, set()).update([change.reftype] if change.reftype else [])
        out.append({k: sorted(v) for k, v in sorted(found.items())})
    return out


def _server_history(server: str, observatory: str) -> list[Any]:
    import asyncio

    from crdswatch.sources.crds_rpc import CrdsRpcClient

    async def run() -> list[Any]:
        async with CrdsRpcClient(server) as client:
            return await client.get_context_history(observatory)

    return asyncio.run(run())


def replay_server(
    mappings: Annotated[Path | None, typer.Option(help="Folder of mapping files (default: the bundled JWST set).")] = None,
    server_config: Annotated[
        Path | None, typer.Option("--server-config", help="Saved get_server_info() reply with the history.")
    ] = None,
    upto: Annotated[str | None, typer.Option(help="Start with history up to this context, e.g. jwst_0500.pmap.")] = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port (0 = any free port).")] = 8078,
    affected_not_ready: Annotated[int, typer.Option(
        "--affected-not-ready", min=0,
        help="get_affected_datasets answers 'not computed yet' to the first N calls for each switch.")] = 0,
) -> None:
    """Serve real CRDS history over the real JSON-RPC protocol, one activation at a time.

    Point crdswatch, or the crds client (CRDS_SERVER_URL), at it. Control it with
    POST /control/activate-next, POST /control/activate {"context": ...}, GET /control/state,
    POST /control/fault {"kind": "http500"|"timeout"|..., "count": N},
    POST /control/affected-not-ready {"count": N}. get_affected_datasets is computed with
    crdswatch's own bestrefs over a bundled set of real-looking JWST dataset headers.
    Without --mappings and --server-config it serves the bundled JWST history (2012-2019).
    """
    import tempfile

    from crdswatch.devtools.replay import serve_forever

    if (mappings is None) != (server_config is None):
        fail("give both --mappings and --server-config, or neither for the bundled JWST history")
    with tempfile.TemporaryDirectory(prefix="crdswatch-replay-") as tmp:
        if mappings is None or server_config is None:
            from crdswatch.devtools.bundled import extract_bundled

            data = extract_bundled(Path(tmp))
            mappings, server_config = data / "mappings", data / "config" / "server_config"
        try:
            serve_forever(mappings, server_config, upto, host=host, port=port, affected_not_ready=affected_not_ready)
        except (CrdswatchError, ValueError, OSError) as exc:
            fail(str(exc))


def register(app: typer.Typer) -> None:
    app.command()(diff)
    app.command()(history)
    app.command("replay-server")(replay_server)
