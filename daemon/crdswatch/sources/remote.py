"""Fetch exactly the mappings a diff needs from a CRDS server, through the verified cache."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path

from crdswatch.contexts.diff import missing_mappings
from crdswatch.contexts.library import MappingLibrary
from crdswatch.contexts.mappings import Mapping as ParsedMapping
from crdswatch.contexts.mappings import parse_mapping
from crdswatch.contexts.parsedcache import default_cache_root
from crdswatch.errors import MappingError
from crdswatch.limits import DEFAULT_LIMITS, Limits
from crdswatch.sources.mapcache import MappingCache, MappingFetcher

__all__ = ["default_cache_dir", "fetch_diff_mappings", "load_for_diff"]


def default_cache_dir() -> Path:
    return default_cache_root() / "mappings"


Checksums = Callable[[list[str]], Awaitable[Mapping[str, str]]]


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
        fresh = [n for n in need if (observatory, n) not in fetcher.cache]
        if checksums is not None and fresh:
            fetcher.set_expected_sha1(dict(await checksums(fresh)))
        texts = await fetcher.get_many(observatory, need)
        parsed = await asyncio.to_thread(_parse_all, texts, limits)
        for mapping in parsed:
            library.add(mapping)
        loaded.update(need)
    raise MappingError(f"diff of {old} and {new}: mappings nested deeper than {_MAX_ROUNDS - 1} levels")


_MAX_ROUNDS = 4  # pmaps, imaps, rmaps, and one round to see that nothing is left


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
