"""The first half of the story, top to bottom: source -> diff -> match -> outbox (app.drain tells the
second: outbox -> render -> channel). `poll_once` is the whole poll; the helpers follow in the order
it calls them."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import partial
from typing import TypeVar

from crdswatch.app.affected import wants_affected
from crdswatch.app.datasets import dataset_selections
from crdswatch.contexts.diff import diff_contexts, missing_mappings
from crdswatch.contexts.history import parse_history_date, since_cutoff
from crdswatch.contexts.library import MappingLibrary
from crdswatch.contexts.names import is_revert
from crdswatch.contexts.pending import Pending, new_reference_files, pending_activations
from crdswatch.errors import SourceError
from crdswatch.model import Activation, ActivationDiff, DiffResult, FileInfo, Interest, SourceKey
from crdswatch.notices.bridge import announcement_line
from crdswatch.notices.codec import activation_record, delivery_payload
from crdswatch.notices.correlate import names_of
from crdswatch.notices.datasets import SelectionChange
from crdswatch.notices.match import notices_for, select_changes, wants_state
from crdswatch.notices.programs import programs_only
from crdswatch.notices.subscriptions import Subscription, next_digest_slot, subscription_from_config
from crdswatch.sources.crds import CrdsSource
from crdswatch.store import Cursor, NewActivation, NewDelivery, Store, source_key
from crdswatch.store.aio import AsyncStore
from crdswatch.store.upstream import naming

__all__ = ["PollReport", "Watch", "is_revert", "plan_deliveries", "poll_once"]

_T = TypeVar("_T")
_R = TypeVar("_R")
_SLICE = 500  # subscribers per worker-thread call while matching (see _sliced)
# Activations of a backfill whose mappings are looked up and downloaded together, one level at a time
# (CrdsSource.prefetch_for_diffs): the history replay's 149 took ~450 sha1 lookups one by one. Small
# enough that a fault (raised at its own activation) leaves little loaded in vain.
_WINDOW = 32
# The activations of a window are recorded together, one transaction (one commit, one worker-thread
# call) for as many as hold this many outbox rows: one per activation cost the history replay ~150
# fsyncs and thread hops. An activation with more rows (a 10,000-member list) is recorded on its own,
# as every activation used to be, so no transaction grows past one activation's or this many rows.
_BATCH_ROWS = 2000


@dataclass
class Watch:
    """One watched (server, observatory, state); `since` backfills on first start."""

    source: CrdsSource
    state: str = "latest"
    since: str | None = None
    poll_interval: int = 300  # seconds, from its [[sources]] table
    alert_after: int = 3  # consecutive failed polls before the operator is told
    idle_polls: int = 0  # polls since the history was last read (see _history_moved)

    @property
    def key(self) -> str:
        return source_key(self.source.server_url, self.source.observatory, self.state)


@dataclass
class PollReport:
    context: str | None = None
    baseline: bool = False
    processed: list[str] = field(default_factory=list)
    queued: int = 0
    lost_race: bool = False


async def poll_once(watch: Watch, store: Store, now: datetime) -> PollReport:
    """One poll. Raises on any server or mapping fault, leaving the cursor where it was."""
    src = watch.source
    current = await src.current(watch.state)  # the idle poll: one small request
    report = PollReport(context=current)
    db = store.aio  # the database is awaited off the event loop, under a deadline
    cursor = await db.get_cursor(watch.key)
    if cursor is not None and cursor.context == current and not await _history_moved(watch, cursor):
        return report
    todo, cursor = await _pending(watch, store, cursor, current, now, report)
    stored = await db.list_subscribers()
    subscriptions = await _sliced(lambda part: [subscription_from_config(s.name, s.config) for s in part], stored)
    try:
        return await _process(watch, store, todo, cursor, subscriptions, now, report)
    finally:
        if report.processed:  # the next diff starts from here: a backfill's other ~1,300 parsed mappings can go
            src.library.retain_tree(report.processed[-1])


async def _process(watch: Watch, store: Store, todo: Sequence[Pending], cursor: Cursor | None,
                   subscriptions: Sequence[Subscription], now: datetime, report: PollReport) -> PollReport:
    """Each pending activation in order: diff, match, and the outbox rows with the cursor, or stop.

    A backfill records its activations a batch at a time (`_Batch`); a fault at one activation
    first records the ones planned before it, so it stops at its own activation, as one at a time.
    """
    src, db = watch.source, store.aio
    ahead = _Ahead()
    batch = _Batch(watch.key, cursor, now)
    for i, item in enumerate(todo):
        if i % _WINDOW == 0:
            if not await batch.flush(db, report):
                return report
            if len(todo) - i > 1:  # a backfill: the next activations together, as far as they go
                ahead = await _look_ahead(src, todo[i:i + _WINDOW], db)
        try:
            planned = await _plan(watch, item, db, ahead, subscriptions, now)
        except Exception:
            if await batch.flush(db, report):
                raise
            return report  # another replica had recorded those; it owns the rest
        if batch.rows + len(planned.deliveries) > _BATCH_ROWS and not await batch.flush(db, report):
            return report
        batch.add(planned)
    await batch.flush(db, report)
    return report


async def _plan(watch: Watch, item: Pending, db: AsyncStore, ahead: _Ahead, subscriptions: Sequence[Subscription],
                now: datetime) -> NewActivation:
    """One activation's diff, outbox rows and stored record, ready to be recorded."""
    result, diff = await _diff(watch, item, db, ahead)  # source -> pure diff, with catalog facts and announcements
    selections = await dataset_selections(watch.source, item, subscriptions)  # bestrefs, old vs new
    # match: rule keys are regular expressions from the server; off the loop, under a time budget
    # (and thousands of subscribers never hold the event loop: a slice at a time)
    deliveries = await _sliced(partial(plan_deliveries, diff, now=now, selections=selections, shared={}),
                               subscriptions)
    # the seen activation's record holds the catalog facts too: the rows refer to it and each notice
    # is rendered from it when sent; with them, when program subscribers wait on the server's affected
    # datasets, the lookup app.affected works off later.
    return NewActivation(item.activation, item.previous, activation_record(result, diff), deliveries,
                         wants_affected(diff, subscriptions))


@dataclass
class _Batch:
    """Activations planned and not yet recorded, and the cursor they start from."""

    key: str
    cursor: Cursor | None
    now: datetime
    items: list[NewActivation] = field(default_factory=list)
    rows: int = 0

    def add(self, item: NewActivation) -> None:
        self.items.append(item)
        self.rows += len(item.deliveries)

    async def flush(self, db: AsyncStore, report: PollReport) -> bool:
        """Cursor, seen activations and outbox rows of all of them in one transaction, or nothing.

        False when another replica moved the cursor first (nothing written; it owns the rest). The
        store returns the cursor it wrote, so nothing is read back between batches.
        """
        if not self.items:
            return True
        cursor = await db.record_activations(self.key, self.items, self.cursor, now=self.now)
        if cursor is None:
            report.lost_race = True
            return False
        self.cursor = cursor
        report.processed.extend(item.activation.context for item in self.items)
        report.queued += self.rows
        self.items, self.rows = [], 0
        return True


async def _sliced(fn: Callable[[Sequence[_T]], Sequence[_R]], items: Sequence[_T], size: int = _SLICE) -> list[_R]:
    """`fn` over `items`, `size` at a time, each slice in a worker thread.

    Between slices the event loop has the GIL to itself: one call over 10,000 subscribers kept
    it from the loop for 100-300 ms at a time on a busy 2-core machine (a CPU-bound thread gets
    the GIL back as soon as it is released, and the loop thread waits for a core each time).
    """
    out: list[_R] = []
    for start in range(0, len(items), size):
        out.extend(await asyncio.to_thread(fn, items[start:start + size]))
    return out


async def _history_moved(watch: Watch, cursor: Cursor) -> bool:
    """Has the server's history moved on although its current context is the one we saw last?

    The cursor is the server's history itself: its last entry (context and date) must be the one we
    processed last. A context that changed and came back between two polls (A -> B -> A) or a
    backdated entry leaves the current context as it was, so every `limits.history_every`-th idle
    poll reads the history (the idle poll otherwise stays one small request): worst-case delay
    history_every x poll_interval. build/edit pointers have no history.
    """
    if watch.state != "latest":
        return False
    watch.idle_polls += 1
    if watch.idle_polls < watch.source.limits.history_every:
        return False
    watch.idle_polls = 0
    history = await watch.source.history()
    return bool(history) and (history[-1].context, history[-1].date) != (cursor.context, cursor.activation_date)


async def _pending(
    watch: Watch, store: Store, cursor: Cursor | None, current: str, now: datetime, report: PollReport
) -> tuple[list[Pending], Cursor | None]:
    src = watch.source
    history = await src.history() if watch.state == "latest" else []
    if cursor is None:
        base, todo = _baseline(history, current, watch.since)
        if base is None:
            base = src.now_activation(current, watch.state, now)
        report.baseline = True
        return todo, await store.aio.record_activations(watch.key, [NewActivation(base, None, None)], None, now=now)
    if watch.state != "latest":
        return [Pending(src.now_activation(current, watch.state, now), cursor.context)], cursor
    return pending_activations(history, cursor.context, cursor.activation_date), cursor


def _baseline(history: list[Activation], current: str, since: str | None) -> tuple[Activation | None, list[Pending]]:
    """First start: the current context is the baseline (nothing sent) unless `since` asks to backfill."""
    if not history:
        return None, []
    if since is None:
        matches = [a for a in history if a.context == current]
        return (matches[-1] if matches else history[-1]), []
    if since.endswith("map"):
        starts = [i for i, a in enumerate(history) if a.context == since]
        if not starts:
            raise ValueError(f"--since {since}: not in the server's context history")
        start = starts[-1]
    else:
        cutoff = since_cutoff(since)
        start = next((i for i, a in enumerate(history) if parse_history_date(a.date) >= cutoff), len(history))
    if start == 0:
        return history[0], pending_activations(history, history[0].context, history[0].date)
    base = history[start - 1]
    return base, pending_activations(history, base.context, base.date)


@dataclass
class _Ahead:
    """What `_look_ahead` did for the next activations of a backfill: diffs by pair, catalogue facts."""

    diffs: dict[tuple[str, str], DiffResult] = field(default_factory=dict)
    catalog: dict[str, FileInfo] = field(default_factory=dict)
    # What the window's announcement look-ups look in (store.post_names), read once for them all:
    # a worker-thread call and a statement per activation were ~0.4 ms of CPU each
    post_names: list[tuple[int, str]] | None = None


async def _look_ahead(src: CrdsSource, window: Sequence[Pending], db: AsyncStore) -> _Ahead:
    """The next activations of a backfill together: their mappings a level at a time for all of them
    (one sha1 lookup and one round of downloads per level), their diffs in one worker-thread call and
    one catalogue lookup of all their new files, instead of each of these per activation.

    Best effort: the diffs whose mappings are all in hand, in order, up to the first that fails.
    Whatever was not done here is done, and any fault raised, at its own activation (`_diff`), so
    the activations before a fault are queued exactly as one at a time.
    """
    pairs = [_pair(item) for item in window]
    await src.prefetch_for_diffs(pairs)
    ready = list(itertools.takewhile(lambda pair: not missing_mappings(*pair, src.library), pairs))
    ahead = _Ahead(dict(zip(ready, await asyncio.to_thread(_diffs_in_order, ready, src.library))))
    files = sorted({name for result in ahead.diffs.values() for name in new_reference_files(result)})
    if files:
        try:
            ahead.catalog = await src.catalog_facts(files)
        except SourceError:  # asked again, and raised, at the first activation that needs it
            pass
    with contextlib.suppress(Exception):  # then each activation asks on its own, and raises, as without this
        ahead.post_names = await db.run("post_names", db.store.post_names)
    return ahead


def _diffs_in_order(pairs: Sequence[tuple[str, str]], library: MappingLibrary) -> list[DiffResult]:
    out: list[DiffResult] = []
    for old, new in pairs:
        try:
            out.append(diff_contexts(old, new, library))
        except Exception:  # noqa: BLE001 - computed again, and raised, at its own activation
            break
    return out


async def _diff(watch: Watch, item: Pending, db: AsyncStore, ahead: _Ahead) -> tuple[DiffResult, ActivationDiff]:
    """What one activation changed: the source fetches exactly the mappings the diff reads, the
    pure diff runs off the loop, the catalog describes the new files, the bridge adds announcements."""
    src = watch.source
    old, new = _pair(item)
    result = ahead.diffs.get((old, new))
    if result is None:
        library = await src.load_for_diff(old, new)
        # diff: pure and CPU-heavy (thousands of rules), so in a worker thread; /healthz and the drain go on
        result = await asyncio.to_thread(diff_contexts, old, new, library)
    catalog = await src.catalog(new_reference_files(result), ahead.catalog)
    # The key's URL, not the configured one: notices carry links, and links must not carry passwords.
    public_url = SourceKey.parse(watch.key).server_url
    diff = ActivationDiff(src.observatory, public_url, watch.state, item.activation, item.previous,
                          result.changes, catalog, is_revert(item.previous, item.activation.context))
    return result, await _announced(diff, db, ahead)  # the bridge: upstream posts that named what this activates


def _pair(item: Pending) -> tuple[str, str]:
    """The contexts the activation's diff compares (old, new)."""
    return item.previous or item.activation.context, item.activation.context


async def _announced(diff: ActivationDiff, db: AsyncStore, ahead: _Ahead) -> ActivationDiff:
    names = sorted(names_of(diff).names)
    if ahead.post_names is None:
        posts = await db.run("posts_naming", db.store.posts_naming, names)
    else:  # the posts as the window began: one posted since is announced from the next window on
        ids = naming(ahead.post_names, names)
        posts = await db.run("posts_naming", db.store.posts_by_id, ids) if ids else []
    lines = tuple(dict.fromkeys(announcement_line(p.upstream, p.date, p.subject, p.link) for p in posts))
    return replace(diff, announcements=lines) if lines else diff


def plan_deliveries(diff: ActivationDiff, subscriptions: Sequence[Subscription], now: datetime,
                    selections: Mapping[str, list[SelectionChange]] | None = None,
                    shared: dict[Interest, list[int]] | None = None) -> list[NewDelivery]:
    """One outbox row per (subscriber whose filters select something, channel).

    A row names the selected changes by index into the stored activation (stored once); the
    subscribers with the same filters share one selection, computed once (a community list has
    few distinct filters; pass the same `shared` to calls over slices of one list). Dataset
    subscribers are matched one by one (`selections`).
    """
    index = {id(change): i for i, change in enumerate(diff.changes)}
    shared = {} if shared is None else shared
    rows: list[NewDelivery] = []
    for sub in subscriptions:
        if not wants_state(diff, sub) or programs_only(sub):  # programs only: app.affected tells them
            continue
        if sub.datasets:
            found = notices_for(diff, [sub], selections)
            if not found:
                continue
            notice = found[0][1]
            mine = [index[id(c)] for c in notice.activations[0].changes]
            payload = delivery_payload(mine, sub.reason, sub.digest, notice.interest, notice.dataset_hits)
        else:
            key = sub.filters.interest()  # hashable, and the same for the same filters
            chosen = shared.get(key)
            if chosen is None:
                selected = select_changes(diff.observatory, diff.changes, sub.filters, diff.catalog)
                chosen = shared[key] = [index[id(c)] for c in selected]
            if not chosen:
                continue
            payload = delivery_payload(chosen, sub.reason, sub.digest, key)
        slot = next_digest_slot(sub, now)
        rows.extend(NewDelivery(sub.name, channel, payload, not_before=slot) for channel in sub.channels)
    return rows
