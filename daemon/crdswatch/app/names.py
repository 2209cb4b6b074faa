"""Are a subscriber's instrument, reftype and parameter names ones CRDS knows?

`instruments = ["nircma"]` would otherwise validate and then never match anything. The names
are checked against the newest context known: the server's current one when it answers
(its mappings downloaded through the verified cache the daemon shares), else the newest context
in that cache (offline), else the caller's fallback (the bundled data); `NameCheck.origin` says
which was used, and when none is available the check says it was skipped.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from crdswatch.contexts.keywords import keyword
from crdswatch.contexts.library import MappingLibrary
from crdswatch.contexts.mappings import Mapping, parse_mapping
from crdswatch.contexts.vocabulary import Vocabulary, did_you_mean, newest_context, vocabulary_of
from crdswatch.errors import CrdswatchError, MappingError, UnknownMappingError
from crdswatch.limits import DEFAULT_LIMITS
from crdswatch.redact import redact_url

__all__ = ["OfflineMappings", "cached_vocabulary", "check_names", "check_settings", "offline_vocabulary",
           "server_vocabulary", "split_definitive", "vocabularies"]

# (observatory) -> (names available, text of one) for an offline fallback such as the bundled data
OfflineMappings = Callable[[str], tuple[Sequence[str], Callable[[str], str | None]] | None]


def _parser(text_of: Callable[[str], str | None]) -> Callable[[str], Mapping | None]:
    memo: dict[str, Mapping | None] = {}

    def get(name: str) -> Mapping | None:
        if name not in memo:
            text = text_of(name)
            try:
                memo[name] = None if text is None else parse_mapping(
                    name, text, max_bytes=DEFAULT_LIMITS.mapping_max_bytes, max_items=DEFAULT_LIMITS.mapping_max_items)
            except MappingError:
                memo[name] = None
        return memo[name]
    return get


def offline_vocabulary(observatory: str, names: Sequence[str], text_of: Callable[[str], str | None],
                       origin: str) -> Vocabulary | None:
    context = newest_context(names, observatory)
    if context is None:
        return None
    try:
        return vocabulary_of(context, _parser(text_of), origin=origin, available=names)
    except LookupError:
        return None


def cached_vocabulary(observatory: str, cache_root: Path) -> Vocabulary | None:
    """From the newest context in the daemon's verified mapping cache, without the network."""
    from crdswatch.sources.mapcache import MappingCache

    cache = MappingCache(cache_root / "mappings")
    names = cache.names(observatory)
    return offline_vocabulary(observatory, names, lambda n: cache.get(observatory, n),
                              f"the mapping cache {cache_root / 'mappings'} (offline)")


async def server_vocabulary(server_url: str, observatory: str, cache_root: Path, timeout: float) -> Vocabulary:
    """From the server's current `latest` context; mappings go through (and stay in) the cache."""
    from crdswatch.sources.crds_rpc import CrdsRpcClient
    from crdswatch.sources.mapcache import MappingCache, MappingFetcher
    from crdswatch.sources.remote_context import load_context

    def not_fetched(name: str) -> str:
        raise UnknownMappingError(f"{name}: not fetched")

    async with CrdsRpcClient(server_url, timeout=timeout, retries=0) as client:
        context = await client.get_default_context(observatory, "latest")
        fetcher = MappingFetcher(client, MappingCache(cache_root / "mappings"))
        library = await load_context(fetcher, observatory, context, None, MappingLibrary(not_fetched))

    def get(name: str) -> Mapping | None:
        try:
            return library[name]
        except UnknownMappingError:
            return None
    return vocabulary_of(context, get, origin=f"the server {redact_url(server_url)}")


def vocabularies(settings: Any, cache_root: Path, *, online: bool = True,
                 fallback: OfflineMappings | None = None) -> tuple[dict[str, Vocabulary], list[str]]:
    """One vocabulary per configured observatory (server, else cache, else `fallback`); and a note
    for each observatory whose names cannot be checked, or whose server was not reachable."""
    found: dict[str, Vocabulary] = {}
    notes: list[str] = []
    for src in settings.sources:
        obs = src.observatory
        if obs in found:
            continue
        vocab: Vocabulary | None = None
        if online:
            try:
                vocab = asyncio.run(server_vocabulary(str(src.server_url), obs, cache_root, min(src.timeout, 30)))
            except (CrdswatchError, OSError, LookupError) as exc:
                notes.append(f"{obs}: server {redact_url(str(src.server_url))} not usable "
                             f"({redact_url(str(exc)) or type(exc).__name__}); using what is cached")
        if vocab is None:
            vocab = cached_vocabulary(obs, cache_root)
        if vocab is None and fallback is not None:
            offline = fallback(obs)
            if offline is not None:
                vocab = offline_vocabulary(obs, offline[0], offline[1], "the bundled mappings (offline)")
                vocab = replace(vocab, definitive=False) if vocab is not None else None
        if vocab is None:
            notes.append(f"{obs}: name validation skipped: no server reachable and no cached mappings")
        else:
            found[obs] = vocab
            notes.append(f"{obs}: names checked against {vocab.context} from {vocab.origin}"
                         + ("" if vocab.definitive else "; names it lacks may be newer: warnings only")
                         + (f"; {len(vocab.missing)} mappings unavailable, their names not checked"
                            if vocab.missing else ""))
    return found, notes


def check_names(where: str, filters: Any, vocabs: dict[str, Vocabulary]) -> list[str]:
    """One line per unknown instrument, reftype or parameter of `filters` (a subscriber or list),
    `where` naming it (`subscribers[0] (miri)`), with a did-you-mean."""
    chosen = [vocabs[o] for o in (filters.observatories or sorted(vocabs)) if o in vocabs]
    if not chosen:
        return []
    contexts = ", ".join(v.context for v in chosen)
    errors: list[str] = []
    known_instruments = frozenset().union(*(v.instruments for v in chosen))
    for name in filters.instruments:
        if name not in known_instruments:
            errors.append(f"{where}.instruments: {name!r} is not an instrument of {contexts}"
                          + did_you_mean(name, known_instruments - {"system"}))
    instruments = [i for i in filters.instruments if i in known_instruments]
    reftypes = _union(v.reftypes_of(_of(v, instruments)) for v in chosen)
    if reftypes is not None:
        scope = f" for {', '.join(instruments)}" if instruments else ""
        for name in filters.reftypes:
            if name not in reftypes:
                errors.append(f"{where}.reftypes: {name!r} is not a reference type of {contexts}{scope}"
                              + did_you_mean(name, reftypes))
    parameters = _union(v.parameters_of(_of(v, instruments)) for v in chosen)
    if parameters is not None:
        scope = f" for {', '.join(instruments)}" if instruments else ""
        for name in filters.parameters:
            if name.upper() not in parameters and keyword(name) not in parameters:
                keywords = {p for p in parameters if "." not in p}
                errors.append(f"{where}.parameters: {name!r} is not a parameter the rules of {contexts}{scope} "
                              "select on" + did_you_mean(name.upper(), keywords or parameters))
    return errors


def _of(vocab: Vocabulary, instruments: list[str]) -> list[str]:
    """The instruments of `instruments` this vocabulary has (its observatory's); all when none."""
    mine = [i for i in instruments if i in vocab.instruments]
    return mine if mine or not instruments else ["__none__"]


def _union(sets: Iterable[frozenset[str] | None]) -> frozenset[str] | None:
    out: frozenset[str] = frozenset()
    for s in sets:
        if s is None:
            return None
        out |= s
    return out


def split_definitive(vocabs: dict[str, Vocabulary]) -> tuple[dict[str, Vocabulary], dict[str, Vocabulary]]:
    """(vocabularies whose verdict refuses a name, those that only warn: the bundled snapshot)."""
    return ({o: v for o, v in vocabs.items() if v.definitive}, {o: v for o, v in vocabs.items() if not v.definitive})


def check_settings(settings: Any, vocabs: dict[str, Vocabulary]) -> list[str]:
    """Every bad name of every configured subscriber and list."""
    errors: list[str] = []
    for i, sub in enumerate(settings.subscribers):
        errors += check_names(f"subscribers[{i}] ({sub.name})", sub, vocabs)
    for i, lst in enumerate(getattr(settings, "lists", []) or []):
        errors += check_names(f"lists[{i}] ({lst.name})", lst, vocabs)
    return errors
