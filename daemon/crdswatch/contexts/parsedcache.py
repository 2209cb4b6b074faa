"""On-disk cache of parsed mappings, keyed by the sha1 of their text: re-parsing costs more than diffing."""

from __future__ import annotations

import hashlib
import marshal
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from crdswatch.contexts.mappings import Mapping, Selector, parse_mapping

__all__ = ["ParsedCache", "default_cache_root"]

_VERSION = 1  # bump when Mapping/Selector change shape


def default_cache_root() -> Path:
    """`$CRDSWATCH_CACHE`, else `$XDG_CACHE_HOME/crdswatch`, else `~/.cache/crdswatch`."""
    explicit = os.environ.get("CRDSWATCH_CACHE")
    if explicit:
        return Path(explicit)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "crdswatch"


class ParsedCache:
    """`parse(name, text)` with a memo on disk.

    Entries hold plain tuples/dicts/strings written with `marshal` (no code objects, nothing that
    runs on load), and are found by the text's own sha1, so an edited file can never be served
    from a stale entry. Any cache trouble falls back to parsing: the cache is an optimisation.
    """

    def __init__(self, root: Path | None) -> None:
        self.root = root / f"parsed-v{_VERSION}" if root is not None else None

    def parse(self, name: str, text: str) -> Mapping:
        if self.root is None:
            return parse_mapping(name, text)
        digest = hashlib.sha1(text.encode("utf-8")).hexdigest()
        return self._cached(self.root / digest[:2] / f"{digest}-{name}", name, lambda: text)

    def parse_file(self, file: Path, read: Callable[[], str]) -> Mapping:
        """Like parse(), for a local file: found by name, size and mtime without reading the file.

        The same rule Python uses for .pyc files; an edited file gets a new mtime, hence a new entry.
        """
        if self.root is None:
            return parse_mapping(file.name, read())
        stat = file.stat()
        digest = hashlib.sha1(f"{os.path.abspath(file)}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()
        return self._cached(self.root / "by-stat" / digest[:2] / f"{digest}-{file.name}", file.name, read)

    def _cached(self, entry: Path, name: str, read: Callable[[], str]) -> Mapping:
        try:
            return _from_builtin(marshal.loads(entry.read_bytes()))
        except (OSError, EOFError, ValueError, TypeError, IndexError, KeyError):
            pass
        mapping = parse_mapping(name, read())
        self._store(entry, mapping)
        return mapping

    def _store(self, path: Path, mapping: Mapping) -> None:
        import tempfile  # only when writing: keeps the warm (read-only) path's start-up short

        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
            with os.fdopen(fd, "wb") as handle:
                handle.write(marshal.dumps(_to_builtin(mapping)))
            os.replace(tmp, path)
        except (OSError, ValueError):
            pass  # read-only home, full disk, unmarshallable value: just do without


def _selector_builtin(selector: Selector) -> tuple[Any, ...]:
    items = tuple(
        (key, _selector_builtin(choice) if isinstance(choice, Selector) else choice)
        for key, choice in selector.items
    )
    return (selector.kind, selector.parameters, items)


def _selector_from(data: tuple[Any, ...]) -> Selector:
    kind, parameters, items = data
    return Selector(
        kind, tuple(parameters),
        tuple((key, choice if isinstance(choice, str) else _selector_from(choice)) for key, choice in items),
    )


def _to_builtin(mapping: Mapping) -> tuple[Any, ...]:
    selector = _selector_builtin(mapping.selector) if mapping.selector is not None else None
    return (mapping.name, mapping.kind, mapping.header, mapping.comment, mapping.selections, selector)


def _from_builtin(data: tuple[Any, ...]) -> Mapping:
    name, kind, header, comment, selections, selector = data
    return Mapping(name, kind, header, comment, selections, _selector_from(selector) if selector else None)
