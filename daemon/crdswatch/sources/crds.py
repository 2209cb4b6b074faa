"""A watched CRDS server: cheap change detection, then ordered activations with their diffs and catalog."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from crdswatch.contexts.library import MappingLibrary
from crdswatch.contexts.mappings import parse_mapping
from crdswatch.errors import UnknownMappingError
from crdswatch.limits import DEFAULT_LIMITS, Limits
from crdswatch.model import Activation, FileInfo
from crdswatch.sources.crds_rpc import CrdsRpcClient
from crdswatch.sources.fitsheader import fill_from_fits, fits_available
from crdswatch.sources.mapcache import MappingCache, MappingFetcher
from crdswatch.sources.remote import load_for_diff, prefetch_for_diffs

__all__ = ["CATALOG_FIELDS", "CrdsSource"]

# get_file_info_map field -> FileInfo attribute
CATALOG_FIELDS = {
    "pedigree": "pedigree",
    "change_level": "change_level",
    "description": "description",
    "deliverer_user": "deliverer",
    "delivery_date": "delivery_date",
    "activation_date": "activation_date",
    "useafter_date": "useafter_date",
}


class CrdsSource:
    """One CRDS server and observatory. All I/O of the watcher's source stage lives here."""

    def __init__(
        self, server_url: str, observatory: str, cache_dir: Path, *, timeout: float = 30.0,
        client: CrdsRpcClient | None = None, fits_fallback: bool = False, limits: Limits = DEFAULT_LIMITS,
    ) -> None:
        self.server_url = server_url.rstrip("/")
        self.timeout = timeout
        self.limits = limits
        # Only when configured ([[sources]] fits_fallback): astropy being importable (the test
        # extra brings it) must not add a request per new file. Needs the [fits] extra.
        self.fits_fallback = fits_fallback
        self._http: httpx.AsyncClient | None = None
        self.observatory = observatory
        self.client = client or CrdsRpcClient(self.server_url, timeout=timeout, limits=limits)
        cache = MappingCache(cache_dir / "mappings")
        self.fetcher = MappingFetcher(self.client, cache, concurrency=limits.download_concurrency)

        def cached_text(name: str) -> str:
            text = cache.get(observatory, name)
            if text is None:
                raise UnknownMappingError(f"{name}: not downloaded yet")
            return text

        # Parsed once per process, verified once per download: mappings never change by name. Not
        # through the on-disk parsed cache (contexts.parsedcache, for the command line): a backfill
        # parses ~1,300 mappings once each, and writing an entry for each cost it a file creation,
        # a sha1 and a marshal apiece (~0.17 s of the replay's poll CPU); after a restart the next
        # diff parses the last context's ~100 mappings again, ~40 ms.
        self.library = MappingLibrary(cached_text, parse_mapping)
        self.bestref_rules: Any = None  # compiled rules for dataset subscriptions (app.datasets)

    async def aclose(self) -> None:
        await self.client.aclose()
        if self._http is not None:
            await self._http.aclose()

    async def current(self, state: str) -> str:
        """The server's context for `state`: the one small request an idle poll costs."""
        return await self.client.get_default_context(self.observatory, state)

    async def history(self) -> list[Activation]:
        return await self.client.get_context_history(self.observatory)

    async def load_for_diff(self, old: str, new: str) -> MappingLibrary:
        """Download (verified) and parse every mapping the diff of `old` and `new` reads; the
        caller runs the pure diff (`contexts.diff.diff_contexts`) over the library returned."""
        return await load_for_diff(self.fetcher, self.observatory, old, new, self.library, self.checksums,
                                   self.limits)

    async def prefetch_for_diffs(self, pairs: Sequence[tuple[str, str]]) -> None:
        """Best effort: what the diffs of `pairs` will read, one lookup and download round per level
        for all of them (see remote.prefetch_for_diffs); each diff still calls `load_for_diff`."""
        await prefetch_for_diffs(self.fetcher, self.observatory, pairs, self.library, self.checksums, self.limits)

    async def load_for_bestrefs(self, context: str, instruments: set[str]) -> None:
        """Every mapping best-reference selection for `instruments` reads under `context`."""
        from crdswatch.sources.remote_context import load_context

        await load_context(self.fetcher, self.observatory, context, instruments, self.library, self.limits)

    async def checksums(self, names: list[str]) -> dict[str, str]:
        """The server's catalogue sha1 of each mapping about to be downloaded (one request)."""
        raw = await self.client.get_file_info_map(self.observatory, names, ["sha1sum"])
        return {n: str(r["sha1sum"]) for n, r in raw.items() if isinstance(r, dict) and r.get("sha1sum")}

    async def catalog(self, files: Sequence[str], known: Mapping[str, FileInfo] | None = None) -> dict[str, FileInfo]:
        """Catalog facts for `files` (one request, none if `known` has them all: see catalog_facts);
        fields the server lacks stay None."""
        if not files:
            return {}
        if known is not None and all(name in known for name in files):
            out = {name: known[name] for name in files}
        else:
            out = await self.catalog_facts(files)
        if self.fits_fallback and fits_available():
            if self._http is None:
                self._http = httpx.AsyncClient(timeout=self.timeout, follow_redirects=False)
            base = f"{self.server_url}/unchecked_get/references/{self.observatory}/"
            out = await fill_from_fits(self._http, base, out.values(), limits=self.limits)
        return out

    async def catalog_facts(self, files: Sequence[str]) -> dict[str, FileInfo]:
        """The server's catalogue records of `files` (one request), without the FITS fallback: a
        backfill looks up the new files of several activations at once and passes them to catalog()."""
        raw = await self.client.get_file_info_map(self.observatory, list(files), list(CATALOG_FIELDS))
        out: dict[str, FileInfo] = {}
        for name in files:
            record = raw.get(name)
            out[name] = _file_info(name, record) if isinstance(record, dict) else FileInfo(name)
        return out

    def now_activation(self, context: str, state: str, now: datetime) -> Activation:
        """build/edit contexts have no history: a change we see is dated when we see it."""
        return Activation(now.astimezone(UTC).isoformat(), context, f"{state} context changed")


def _file_info(name: str, record: dict[str, Any]) -> FileInfo:
    def get(field: str) -> str | None:
        value = record.get(field)
        text = str(value).strip() if value is not None else ""
        return None if text.lower() in ("", "none", "null", "unknown", "n/a") else text

    return FileInfo(name, pedigree=get("pedigree"), change_level=get("change_level"),
                    description=get("description"), deliverer=get("deliverer_user"),
                    delivery_date=get("delivery_date"), activation_date=get("activation_date"),
                    useafter_date=get("useafter_date"))

