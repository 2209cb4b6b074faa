"""`crdswatch diff` itself, free of the CLI framework so the offline fast path can run it too."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from crdswatch.errors import CrdswatchError

__all__ = ["emit_json", "run_diff", "split_mapping_arg"]


def emit_json(data: Any) -> None:
    # Indented for people at a terminal; compact (C encoder, several times faster) for pipes.
    # Server text is cleaned (escape sequences, bidi overrides, lone surrogates) like every output.
    from crdswatch.render.clean import clean_data

    indent = 2 if sys.stdout.isatty() else None
    sys.stdout.write(json.dumps(clean_data(data), indent=indent, ensure_ascii=False) + "\n")


def split_mapping_arg(arg: str) -> tuple[str, Path | None]:
    """`path/to/jwst_0541.pmap` -> (`jwst_0541.pmap`, its path); a bare name has no path.

    As with `crds diff`, a name with a folder names that very file; nested mappings still come
    from the mappings folder (by default $CRDS_PATH, else the file's own folder).
    """
    path = Path(arg)
    if path.name != arg:
        return path.name, path
    return arg, None


def run_diff(old: str, new: str, mappings: Path | None, server: str | None, as_json: bool, no_cache: bool,
             brief: bool = False, squash: bool = False) -> int:
    """Print the diff; exit status 0 no differences, 1 differences, 2 error (message on stderr)."""
    from crdswatch.contexts.diff import brief_lines, diff_contexts
    from crdswatch.contexts.library import MappingLibrary, observatory_of, resolve_mappings_dir

    (old, old_path), (new, new_path) = split_mapping_arg(old), split_mapping_arg(new)
    kinds = {Path(old).suffix, Path(new).suffix}
    if len(kinds) > 1:  # as crds diff refuses: a .pmap against an .imap compares nothing meaningful
        return _error(f"cannot compare {old} with {new}: give two mappings of one kind "
                      "(two .pmap contexts, two .imap or two .rmap files)")
    paths = [p for p in (old_path, new_path) if p is not None]
    if paths and server is not None:
        return _error("--server takes mapping names (jwst_0541.pmap), not paths")
    if mappings is None and server is None and paths:
        # crds reads nested mappings from its cache ($CRDS_PATH); without one, the file's folder.
        cache = os.environ.get("CRDS_PATH")
        mappings = Path(cache) if cache else paths[-1].parent
    if (mappings is None) == (server is None):
        return _error("give exactly one of --mappings DIR or --server URL (or name the mappings by path)")
    if squash and not brief:
        return _error("--squash-tuples goes with --brief")
    if brief and as_json:
        return _error("--brief prints crds diff lines; --json prints the structured changes: choose one")
    try:
        observatory = observatory_of(old)
        if mappings is not None:
            from crdswatch.contexts.parsedcache import ParsedCache, default_cache_root

            parsed = ParsedCache(None if no_cache else default_cache_root())
            library = MappingLibrary.from_dir(resolve_mappings_dir(mappings, observatory), cache=parsed)
            _add_named_files(library, paths)
        else:
            from crdswatch.sources.remote import fetch_diff_mappings

            library = fetch_diff_mappings(str(server), observatory, old, new)
        if brief:
            lines = brief_lines(old, new, library, squash=squash)
            sys.stdout.write("".join(line + "\n" for line in lines))
            return 1 if lines else 0
        result = diff_contexts(old, new, library)
    except CrdswatchError as exc:
        return _error(str(exc))
    except OSError as exc:  # a folder or file that cannot be read
        return _error(f"{getattr(exc, 'filename', None) or 'mappings'}: {exc.strerror or exc}")
    except Exception as exc:  # noqa: BLE001 - any error is exit status 2 with one line, never a traceback
        return _error(f"{type(exc).__name__}: {exc}")
    if as_json:
        emit_json(result.to_json())
    else:
        from crdswatch.render.report import format_diff

        sys.stdout.write(format_diff(result))
    return 1 if result.changes else 0


def _add_named_files(library: Any, paths: list[Path]) -> None:
    """Files named by path are read from there, whatever the mappings folder holds under that name."""
    from crdswatch.contexts.mappings import parse_mapping
    from crdswatch.errors import MappingError

    for path in paths:
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise MappingError(f"{path}: no such file") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise MappingError(f"{path}: cannot read: {exc}") from None
        library.add(parse_mapping(path.name, text))


def _error(message: str) -> int:
    sys.stderr.write(f"crdswatch: error: {message}\n")
    return 2
