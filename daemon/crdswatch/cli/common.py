"""What every command module shares: option types, the one-line error exit, JSON output, settings and store."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from crdswatch.cli.diffcmd import emit_json
from crdswatch.errors import CrdswatchError

__all__ = ["ConfigOpt", "JsonOpt", "MappingsOpt", "ServerOpt", "emit_json", "fail", "load_settings_or_fail", "name_vocabularies", "open_store_or_fail",
           "subscribers_of"]

MappingsOpt = Annotated[
    Path | None,
    typer.Option("--mappings", help="Folder of mapping files, or a CRDS cache root with mappings/<obs>/."),
]
ServerOpt = Annotated[
    str | None, typer.Option("--server", help="CRDS server URL, e.g. https://jwst-crds.stsci.edu")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout.")]
ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="TOML config (default config/crdswatch.toml, then /etc/crdswatch/crdswatch.toml)."),
]


def load_settings_or_fail(config: Path | None) -> Any:
    from crdswatch.config import load_settings

    try:
        return load_settings(config)
    except CrdswatchError as exc:
        fail(str(exc))


def open_store_or_fail(settings: Any, *, read_only: bool = False) -> Any:
    """The state database; `read_only` for commands that only show it: no migration, no rewrite of
    the configured subscribers (see `stored_subscribers`), no daemon code loaded."""
    from crdswatch.redact import redact_url
    from crdswatch.store.engine import SchemaNotReady, describe_error

    try:
        if read_only:
            from crdswatch.store.core import Store
            from crdswatch.store.engine import DbTimeouts

            lim = settings.limits
            return Store.open(settings.state.database, read_only=True,
                              timeouts=DbTimeouts(lim.db_connect_timeout, lim.db_statement_timeout, lim.db_lock_timeout))
        from crdswatch.service.runtime import open_store

        return open_store(settings)
    except SchemaNotReady as exc:
        fail(f"{exc}; nothing to show. `crdswatch run` sets it up (as does any command that changes state, "
             "e.g. `crdswatch subscribers add`); this command only reads.")
    except Exception as exc:  # noqa: BLE001 - any database failure is reported the same way
        fail(f"cannot open the state database {redact_url(settings.state.database)!r}: {describe_error(exc)} "
             "(check [state] database and that the server is running and reachable)")


def subscribers_of(settings: Any, store: Any) -> list[Any]:
    """The subscribers as the daemon sees them after its next start: the stored ones merged with
    the config file's, computed without writing (the daemon's start writes the same merge)."""
    from crdswatch.store.configured import configured_subscribers, effective_subscribers

    return effective_subscribers(configured_subscribers(settings), store.list_subscribers())


def fail(message: str, code: int = 2) -> NoReturn:
    typer.echo(f"crdswatch: error: {message}", err=True)
    raise typer.Exit(code)


def name_vocabularies(settings: Any, *, online: bool = True) -> tuple[dict[str, Any], list[str]]:
    """What subscriber names are checked against (app.names): the server's newest context, else
    the mapping cache, else the bundled data; and the notes (which was used, what was skipped)."""
    from crdswatch.app.names import vocabularies
    from crdswatch.contexts.parsedcache import default_cache_root

    vocabs, notes = vocabularies(settings, default_cache_root(), online=online, fallback=_bundled_mappings)
    return vocabs, notes


def _bundled_mappings(observatory: str) -> tuple[list[str], Any] | None:
    """The mappings shipped in crdswatch/data/<obs>-ops.tar.xz (the last resort, offline)."""
    import tarfile

    from crdswatch.devtools.bundled import bundled_tarball_path

    path = bundled_tarball_path(observatory)
    if not path.is_file():
        return None
    texts: dict[str, str] = {}
    with tarfile.open(path, "r:xz") as archive:
        for member in archive:
            if member.isfile() and member.name.startswith("mappings/"):
                data = archive.extractfile(member)
                if data is not None:
                    texts[member.name.rsplit("/", 1)[1]] = data.read().decode("utf-8", "replace")
    return sorted(texts), texts.get
