"""Parsed mappings by name, read lazily from a local folder and parsed once per process."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from collections.abc import Mapping as MappingABC
from pathlib import Path
from typing import TYPE_CHECKING

from crdswatch.contexts.mappings import Mapping, parse_mapping
from crdswatch.errors import MappingError, UnknownMappingError

if TYPE_CHECKING:
    from crdswatch.contexts.parsedcache import ParsedCache

__all__ = ["MappingLibrary", "observatory_of", "resolve_mappings_dir"]

_OBSERVATORIES = ("jwst", "hst", "roman", "tobs")
Parser = Callable[[str, str], Mapping]


def observatory_of(name: str) -> str:
    """`jwst_0541.pmap` -> `jwst`: CRDS names start with their observatory."""
    prefix = name.split("_", 1)[0].split(".", 1)[0].lower()
    if prefix not in _OBSERVATORIES:
        raise MappingError(f"{name}: cannot tell the observatory from the name")
    return prefix


def resolve_mappings_dir(root: Path, observatory: str) -> Path:
    """Accept a flat folder of mappings or a CRDS cache root holding `mappings/<observatory>/`."""
    if not root.is_dir():
        raise MappingError(f"{root}: not a folder")
    nested = root / "mappings" / observatory
    if nested.is_dir():
        return nested
    if (root / observatory).is_dir() and root.name == "mappings":
        return root / observatory
    return root


class MappingLibrary(MappingABC[str, Mapping]):
    """A read-only name -> Mapping lookup over a text loader; each name is parsed at most once."""

    def __init__(self, load_text: Callable[[str], str], parse: Parser = parse_mapping) -> None:
        self._load_text = load_text
        self._parse = parse
        self._parsed: dict[str, Mapping] = {}
        self._load_parsed: Callable[[str], Mapping] | None = None

    @classmethod
    def from_dir(cls, folder: Path, parse: Parser = parse_mapping, cache: ParsedCache | None = None) -> MappingLibrary:
        """Mappings in `folder`; with `cache`, a file parsed before is not even read again."""

        def load(name: str) -> str:
            if "/" in name or "\\" in name or name.startswith("."):
                raise UnknownMappingError(f"{name}: not a mapping name")
            try:
                return (folder / name).read_text(encoding="utf-8")
            except FileNotFoundError:
                raise UnknownMappingError(f"{name}: no such mapping in {folder}") from None
            except UnicodeDecodeError as exc:
                raise MappingError(f"{folder / name}: not UTF-8 text ({exc.reason})") from None

        library = cls(load, parse)
        if cache is not None:
            def cached(name: str) -> Mapping:
                try:
                    return cache.parse_file(folder / name, lambda: load(name))
                except FileNotFoundError:
                    raise UnknownMappingError(f"{name}: no such mapping in {folder}") from None

            library._load_parsed = cached
        return library

    def add(self, mapping: Mapping) -> None:
        self._parsed[mapping.name] = mapping

    def retain_tree(self, root: str) -> None:
        """Forget every parsed mapping but `root` and the ones it names, down to its rmaps.

        A watcher's next diff starts from its last context; a backfill of the JWST history parsed
        ~1,300 mappings (~11 MB of peak RSS in the drain after it, which could not reuse it).
        A forgotten mapping is loaded (and parsed) again if asked for.
        """
        keep: dict[str, Mapping] = {}
        todo = [root]
        while todo:
            name = todo.pop()
            found = self._parsed.get(name)
            if found is None or name in keep:
                continue
            keep[name] = found
            todo.extend(child for child in found.selections.values() if child.endswith((".imap", ".rmap")))
        self._parsed = keep

    def __getitem__(self, name: str) -> Mapping:
        found = self._parsed.get(name)
        if found is None:
            if "/" in name or "\\" in name or name.startswith("."):
                raise UnknownMappingError(f"{name}: not a mapping name")
            loaded = self._load_parsed(name) if self._load_parsed else self._parse(name, self._load_text(name))
            found = self._parsed[name] = loaded
        return found

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        try:
            self[name]
        except UnknownMappingError:
            return False
        return True

    def __iter__(self) -> Iterator[str]:
        return iter(self._parsed)

    def __len__(self) -> int:
        return len(self._parsed)
