"""Fetch exactly the mappings a diff needs from a CRDS server, through the verified cache."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator, Sequence
from collections.abc import Mapping as MappingABC
from pathlib import Path

from crdswatch.contexts.diff import missing_mappings
from crdswatch.contexts.library import MappingLibrary
from crdswatch.contexts.mappings import Mapping as ParsedMapping
from crdswatch.contexts.mappings import parse_mapping
from crdswatch.contexts.parsedcache import default_cache_root
from crdswatch.errors import CrdswatchError, MappingError
from crdswatch.limits import DEFAULT_LIMITS, Limits
from crdswatch.sources.mapcache import Checksums, MappingCache, MappingFetcher

__all__ = ["default_cache_dir", "fetch_diff_mappings", "load_for_diff", "prefetch_for_diffs"]

log = logging.getLogger(__name__)


def default_cache_dir() -> Path:
    return default_cache_root() / "mappings"


async def load_for_diff(
    fetcher: MappingFetcher, observatory: str, old: str, new: str, library: MappingLibrary,
    checksums: Checksums | None = None, limits: Limits = DEFAULT_LIMITS,
) -> MappingLibrary:
    """Fill `library` with every mapping the diff of `old` and `new` reads.

    Only mappings whose names differ between the two contexts are compared, so we walk level by
    level (pmaps, then imaps, then rmaps): at most three rounds of parallel downloads (the parser
    allows no deeper graph), at most `limits.max_mappings_per_context` mappings in all, and
    `limits.download_concurrency` downloads at a time. With `checksums` (the server's catalogue
    sha1s), each download must match it as well as its header. Parsing runs in a worker thread.
    """
    loaded: set[str] = set()
    cap = limits.max_mappings_per_context
    for _round in range(_MAX_ROUNDS):
        need = sorted(missing_mappings(old, new, library))
        if not need:
            return library
        if len(loaded) + len(need) > cap:
            raise MappingError(f"diff of {old} and {new} needs more than max_mappings_per_context "
                               f"({cap}) mappings; nothing more downloaded")
        await _load_round(fetcher, observatory, need, library, checksums, limits)
        loaded.update(need)
    raise MappingError(f"diff of {old} and {new}: mappings nested deeper than {_MAX_ROUNDS - 1} levels")


_MAX_ROUNDS = 4  # pmaps, imaps, rmaps, and one round to see that nothing is left


async def prefetch_for_diffs(
    fetcher: MappingFetcher, observatory: str, pairs: Sequence[tuple[str, str]], library: MappingLibrary,
    checksums: Checksums | None = None, limits: Limits = DEFAULT_LIMITS,
) -> int:
    """Load what the diffs of `pairs` (old, new; in order) will read, level by level for all of them at
    once; returns how many mappings were downloaded or read from the cache and parsed.

    A backfill of ~150 activations otherwise asks for the catalogue sha1s and downloads once per
    level per diff, ~450 lookups one after another; here it is once per level for all the pairs.
    Best effort, and only ever what `load_for_diff` of each pair would load: the pairs' diffs still
    call it, in order, and it raises any fault (download, checksum, parse, cap) at the activation it
    belongs to, so the activations before it are queued exactly as without this. At most
    `limits.max_mappings_per_context` mappings in all: a pair that would take more is left, with
    the ones after it, to its own `load_for_diff` (which applies the cap to that diff alone).
    """
    live = list(pairs)
    budget = limits.max_mappings_per_context
    loaded = 0
    for _round in range(_MAX_ROUNDS):
        need: set[str] = set()
        have = _Asked(library)  # nothing is added to the library until the round's load
        for i, (old, new) in enumerate(live):
            more = missing_mappings(old, new, have) - need
            if loaded + len(need) + len(more) > budget:
                del live[i:]
                break
            need |= more
        if not need:
            break
        try:
            await _load_round(fetcher, observatory, sorted(need), library, checksums, limits)
        except CrdswatchError as exc:  # raised again, in its place, by that diff's own load_for_diff
            log.debug("prefetch stopped: %s", exc)
            break
        loaded += len(need)
    return loaded


class _Asked(MappingABC[str, ParsedMapping]):
    """`library` with `name in` answered once a name: the pairs of a backfill share most names (a
    context is the new one of a pair and the old one of the next), and each miss is a disk lookup."""

    def __init__(self, library: MappingLibrary) -> None:
        self._library = library
        self._answers: dict[object, bool] = {}

    def __contains__(self, name: object) -> bool:
        answer = self._answers.get(name)
        if answer is None:
            answer = self._answers[name] = name in self._library
        return answer

    def __getitem__(self, name: str) -> ParsedMapping:
        return self._library[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._library)

    def __len__(self) -> int:
        return len(self._library)


async def _load_round(fetcher: MappingFetcher, observatory: str, names: list[str], library: MappingLibrary,
                      checksums: Checksums | None, limits: Limits) -> None:
    """One level: the catalogue sha1s of the names not cached yet, the downloads, the parses."""
    texts = await fetcher.get_many(observatory, names, checksums)
    for mapping in await asyncio.to_thread(_parse_all, texts, limits):
        library.add(mapping)


def _parse_all(texts: dict[str, str], limits: Limits) -> list[ParsedMapping]:
    return [parse_mapping(name, text, max_bytes=limits.mapping_max_bytes, max_items=limits.mapping_max_items)
            for name, text in texts.items()]


def fetch_diff_mappings(
    server: str, observatory: str, old: str, new: str, cache_dir: Path | None = None
) -> MappingLibrary:
    """Blocking helper for the command line."""
    from crdswatch.sources.crds_rpc import CrdsRpcClient

    async def run() -> MappingLibrary:
        async with CrdsRpcClient(server) as client:
            fetcher = MappingFetcher(client, MappingCache(cache_dir or default_cache_dir()))
            return await load_for_diff(fetcher, observatory, old, new, MappingLibrary(_no_text))
    return asyncio.run(run())


def _no_text(name: str) -> str:
    from crdswatch.errors import UnknownMappingError

    raise UnknownMappingError(f"{name}: not fetched")
