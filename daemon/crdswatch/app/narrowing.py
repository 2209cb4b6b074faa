"""The subscribe form's narrowing offer for a list: the I/O around `contexts.narrowing`.

Per observatory the list covers, the newest activation seen (any watched source of it) names the
current context; its .pmap, the .imap of each of the list's instruments and their .rmaps come
through the source's verified mapping cache (downloaded once, then on disk), and the pure
`narrowing_options` reads them in a worker thread. The offer is kept per (source, context,
instruments), so a page costs one dictionary lookup once a context has been read.

The daemon reads the offer after each poll (`warm`); a page that finds no offer starts the read
and waits at most `narrowing_wait`, then gets what is at hand (the reference types the archive's
diffs name) while the read goes on. A read under way or failed never makes a page wait; the next
poll retries a failed one. Everything runs on the daemon's loop (the web server is in-process).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import structlog

from crdswatch.app.poll import Watch
from crdswatch.contexts.narrowing import NarrowingOptions, merge_options, narrowing_options
from crdswatch.limits import DEFAULT_LIMITS, Limits
from crdswatch.notices.codec import record_changes
from crdswatch.sources.remote_context import load_context
from crdswatch.store import Store

__all__ = ["NarrowingOffers"]

log = structlog.get_logger("crdswatch.web")
_MAX_CACHED = 64  # offers kept (contexts x instrument sets): a few lists, a few contexts


class NarrowingOffers:
    def __init__(self, store: Callable[[], Store], watches: Sequence[Watch], limits: Limits = DEFAULT_LIMITS) -> None:
        self._store = store
        self.watches = watches
        self.limits = limits
        self._cache: dict[tuple[str, str, tuple[str, ...]], NarrowingOptions] = {}
        self._pending: dict[tuple[str, str, tuple[str, ...]], asyncio.Task[NarrowingOptions]] = {}
        self._failed: set[tuple[str, str, tuple[str, ...]]] = set()  # retried by the next warm, not by pages

    def _current(self, observatories: set[str]) -> list[tuple[Watch, str]]:
        """(a watch, its observatory's newest seen context) per observatory (blocking reads)."""
        newest: dict[str, tuple[int, Watch, str]] = {}
        store = self._store()
        for w in self.watches:
            obs = w.source.observatory
            if observatories and obs not in observatories:
                continue
            seen = store.list_activations(w.key, 1)
            if seen and (obs not in newest or seen[0].id > newest[obs][0]):
                newest[obs] = (seen[0].id, w, seen[0].context)
        return [(w, context) for _, w, context in sorted(newest.values(), key=lambda t: t[1].source.observatory)]

    async def offer(self, filters: Mapping[str, Any], *, warm: bool = False) -> NarrowingOptions:
        """What a member of a list with `filters` can narrow to now; empty before any context.

        A page (`warm` False) that needs a context not read yet starts reading it and waits at most
        `narrowing_wait`; one already being read, or one whose read failed, gets the fallback at
        once. `warm` (after a poll) waits for the read, up to poll_deadline, and retries failures."""
        observatories = {str(o).lower() for o in filters.get("observatories") or ()}
        instruments = tuple(sorted({str(i).lower() for i in filters.get("instruments") or ()}))
        current = await asyncio.to_thread(self._current, observatories)
        offers = [await self._one(w, context, instruments, warm) for w, context in current]
        return merge_options(offers, max_values=self.limits.narrowing_values) if offers else NarrowingOptions()

    async def aclose(self) -> None:
        for task in list(self._pending.values()):
            task.cancel()
        if self._pending:
            await asyncio.wait(list(self._pending.values()), timeout=5)

    async def _one(self, watch: Watch, context: str, instruments: tuple[str, ...], warm: bool) -> NarrowingOptions:
        key = (watch.key, context, instruments)
        found = self._cache.get(key)
        if found is not None:
            return found
        task = self._pending.get(key)
        wait = float(self.limits.poll_deadline) if warm else self.limits.narrowing_wait
        if task is None and (warm or key not in self._failed):
            self._failed.discard(key)
            task = asyncio.get_running_loop().create_task(self._read(watch, context, instruments))
            self._pending[key] = task
            task.add_done_callback(lambda t: self._done(key, t))
        elif not warm:
            task = None  # being read for someone else, or failed: do not make this page wait
        if task is None:
            return await asyncio.to_thread(self._fallback, watch, context, instruments)
        try:
            return await asyncio.wait_for(asyncio.shield(task), wait)
        except TimeoutError:
            log.info("narrowing offer not ready; showing what is at hand", context=context)
        except Exception as exc:  # noqa: BLE001 - the server is away: offer what the archive knows
            log.warning("narrowing offer failed", context=context, error=str(exc))
        return await asyncio.to_thread(self._fallback, watch, context, instruments)

    def _done(self, key: tuple[str, str, tuple[str, ...]], task: asyncio.Task[NarrowingOptions]) -> None:
        self._pending.pop(key, None)
        if task.cancelled():
            return
        if task.exception() is not None:
            self._failed.add(key)
            return
        if len(self._cache) >= _MAX_CACHED:
            self._cache.pop(next(iter(self._cache)))
        self._cache[key] = task.result()

    async def _read(self, watch: Watch, context: str, instruments: tuple[str, ...]) -> NarrowingOptions:
        source = watch.source
        await load_context(source.fetcher, source.observatory, context, set(instruments) or None, source.library,
                           self.limits)
        return await asyncio.to_thread(narrowing_options, context, source.library, instruments,
                                       max_values=self.limits.narrowing_values)

    def _fallback(self, watch: Watch, context: str, instruments: tuple[str, ...]) -> NarrowingOptions:
        """Reference types the archive's diffs name for these instruments (no parameter values)."""
        found: set[str] = set()
        for seen in self._store().list_activations(watch.key, 200):
            for change in record_changes(seen.diff):
                if change.reftype and (not instruments or (change.instrument or "") in instruments):
                    found.add(change.reftype.lower())
        return NarrowingOptions((context,), tuple(sorted(found)), missing=(context,))
