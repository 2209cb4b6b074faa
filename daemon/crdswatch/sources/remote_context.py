"""Fetch the mappings best-reference selection needs (a context, one instrument's rules) from a server."""

from __future__ import annotations

import asyncio
from pathlib import Path

from crdswatch.contexts.library import MappingLibrary
from crdswatch.contexts.mappings import Mapping as ParsedMapping
from crdswatch.contexts.mappings import parse_mapping
from crdswatch.errors import MappingError, UnknownMappingError
from crdswatch.limits import DEFAULT_LIMITS, Limits
from crdswatch.sources.mapcache import MappingCache, MappingFetcher

__all__ = ["fetch_context_mappings"]


def _not_fetched(name: str) -> str:
    raise UnknownMappingError(f"{name}: not fetched")


async def load_context(fetcher: MappingFetcher, observatory: str, context: str, instruments: set[str] | None,
                       library: MappingLibrary, limits: Limits = DEFAULT_LIMITS) -> MappingLibrary:
    """`context`, the .imap of each of `instruments` (all when None) and every .rmap they name."""
    level = [context]
    total = 0
    for depth in range(3):
        total += len(level)
        if total > limits.max_mappings_per_context:
            raise MappingError(f"{context} needs more than max_mappings_per_context ({limits.max_mappings_per_context})")
        texts = await fetcher.get_many(observatory, sorted(level))
        parsed = await asyncio.to_thread(_parse_all, texts, limits)
        following: set[str] = set()
        for mapping in parsed:
            library.add(mapping)
            for key, name in mapping.selections.items():
                if depth == 0 and instruments is not None and key not in instruments:
                    continue
                if name.endswith((".imap", ".rmap")):
                    following.add(name)
        level = sorted(following)
        if not level:
            break
    return library


def _parse_all(texts: dict[str, str], limits: Limits) -> list[ParsedMapping]:
    return [parse_mapping(n, t, max_bytes=limits.mapping_max_bytes, max_items=limits.mapping_max_items)
            for n, t in texts.items()]


def fetch_context_mappings(server: str, observatory: str, context: str, instruments: set[str] | None = None,
                           cache_dir: Path | None = None) -> MappingLibrary:
    """Blocking helper for the command line: downloads go through the verified mapping cache."""
    from crdswatch.sources.crds_rpc import CrdsRpcClient
    from crdswatch.sources.remote import default_cache_dir

    async def run() -> MappingLibrary:
        async with CrdsRpcClient(server) as client:
            fetcher = MappingFetcher(client, MappingCache(cache_dir or default_cache_dir()))
            return await load_context(fetcher, observatory, context, instruments, MappingLibrary(_not_fetched))
    return asyncio.run(run())
