"""The watcher against a real replay server: every activation once, in order, with the right diff.

Runs on SQLite and PostgreSQL; server faults never advance the cursor nor queue a notice.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Connection, event

from crdswatch.app import poll
from crdswatch.app.poll import Watch, poll_once
from crdswatch.contexts.diff import diff_contexts
from crdswatch.contexts.history import load_server_config
from crdswatch.contexts.library import MappingLibrary
from crdswatch.devtools.replay import FAULT_KINDS, ReplayServer
from crdswatch.errors import DatabaseError, SourceError
from crdswatch.notices.codec import subscriber_from_json
from crdswatch.sources.crds import CrdsSource
from crdswatch.sources.crds_rpc import CrdsRpcClient
from crdswatch.store import Cursor, NewActivation, Store
from crdswatch.store.engine import READ_ONLY
from tests.support.store_db import BACKENDS, database_url

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
NIRSPEC = {"email": ["nirspec@example.org"], "instruments": ["nirspec"]}
EVERYTHING = {"email": ["all@example.org"], "slack_webhook": "https://hooks.slack.invalid/x"}


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    with database_url(request.param, tmp_path) as url, Store.open(url) as s:
        s.upsert_subscriber("nirspec-team", subscriber_from_json(NIRSPEC))
        s.upsert_subscriber("everything", subscriber_from_json(EVERYTHING))
        yield s


@pytest.fixture
def server(jwst_data: Path) -> Iterator[ReplayServer]:
    with ReplayServer(jwst_data / "mappings", jwst_data / "config" / "server_config", upto="jwst_0500.pmap") as srv:
        yield srv


@pytest.fixture
async def source(server: ReplayServer, tmp_path: Path) -> AsyncIterator[CrdsSource]:
    # Few, fast retries: a fault must surface within the test, not be ridden out. The read timeout
    # stays under the replay server's 3 s "timeout" fault, but leaves room for its first catalogue
    # build (all 2,482 mappings) on a loaded 2-core machine.
    client = CrdsRpcClient(server.url, timeout=2.0, retries=1, backoff=0.01, max_backoff=0.02)
    src = CrdsSource(server.url, "jwst", tmp_path / "cache", client=client)
    yield src
    await src.aclose()


def real_history(jwst_server_config: Path) -> list[str]:
    return [a.context for a in load_server_config(jwst_server_config).activations()]


async def test_first_start_is_a_silent_baseline_then_idle_polls_cost_one_request(
    store: Store, source: CrdsSource
) -> None:
    watch = Watch(source)
    report = await poll_once(watch, store, NOW)
    assert report.baseline and report.processed == [] and store.counts()["pending"] == 0
    cursor = store.get_cursor(watch.key)
    assert cursor is not None and cursor.context == "jwst_0500.pmap"
    source.client.reset_counters()
    assert (await poll_once(watch, store, NOW)).processed == []
    assert source.client.requests == 1
    assert source.client.bytes_received < 400


async def test_replays_real_history_in_order_with_the_right_diffs(
    store: Store, source: CrdsSource, server: ReplayServer, jwst_mappings: Path, jwst_server_config: Path
) -> None:
    watch = Watch(source)
    await poll_once(watch, store, NOW)
    history = real_history(jwst_server_config)
    start = history.index("jwst_0500.pmap")
    seen: list[str] = []
    # Some activations one poll each, then a burst of ten missed while "down".
    for _ in range(3):
        server.activate_next()
        seen += (await poll_once(watch, store, NOW)).processed
    for _ in range(10):
        server.activate_next()
    seen += (await poll_once(watch, store, NOW)).processed
    assert seen == history[start + 1 : start + 14]
    library = MappingLibrary.from_dir(jwst_mappings)
    stored = {a.context: a for a in store.list_activations(watch.key, limit=100)}
    for previous, context in zip(history[start : start + 13], seen):
        row = stored[context]
        assert row.previous_context == previous
        # as JSON: header values such as 'parkey' tuples come back from the database as lists
        expected = json.loads(json.dumps(diff_contexts(previous, context, library).to_json()))
        assert row.diff is not None
        catalog = row.diff.pop("catalog")
        assert row.diff.pop("revert") is False
        assert row.diff == expected, context
        new_files = {c["new_file"] for c in expected["changes"] if c["level"] == "reference"}
        assert set(catalog) <= new_files  # catalog facts for the files the activation brought
    pending = store.outbox_rows(limit=500)
    assert {r.subscriber for r in pending} == {"nirspec-team", "everything"}
    everything = [r for r in pending if r.subscriber == "everything"]
    assert {r.channel for r in everything} == {"email:all@example.org", "slack"}
    nirspec_contexts = {r.context for r in pending if r.subscriber == "nirspec-team"}
    for context in seen:
        changes = stored[context].diff["changes"]  # type: ignore[index]
        touches_nirspec = any(c["instrument"] == "nirspec" for c in changes)
        assert (context in nirspec_contexts) == touches_nirspec, context


async def test_a_revert_is_reported_as_an_activation(store: Store, source: CrdsSource, server: ReplayServer) -> None:
    watch = Watch(source)
    await poll_once(watch, store, NOW)
    server.activate_next()
    await poll_once(watch, store, NOW)
    server.activate("jwst_0500.pmap")  # back to the older context
    report = await poll_once(watch, store, NOW)
    assert report.processed == ["jwst_0500.pmap"]
    latest = store.list_activations(watch.key, limit=1)[0]
    assert latest.context == "jwst_0500.pmap" and latest.previous_context == "jwst_0501.pmap"
    assert latest.diff is not None and latest.diff["revert"] is True
    row = store.outbox_rows(limit=1)[0]
    assert row.activation_id == latest.id and row.context == "jwst_0500.pmap"
    assert set(row.payload) == {"v", "sel", "reason", "digest", "interest"}  # the notice is stored once


async def test_since_backfills_from_a_context(store: Store, source: CrdsSource, jwst_server_config: Path) -> None:
    history = real_history(jwst_server_config)
    watch = Watch(source, since="jwst_0495.pmap")
    report = await poll_once(watch, store, NOW)
    start = history.index("jwst_0495.pmap")
    assert report.processed == history[start : history.index("jwst_0500.pmap") + 1]


async def test_backfill_looks_each_level_up_once_and_a_fault_stops_at_its_own_activation(
    store: Store, source: CrdsSource, server: ReplayServer, jwst_server_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    history = real_history(jwst_server_config)
    end = history.index("jwst_0500.pmap")
    start = end - 12
    broken = history[start + 3]  # the fourth activation's new pmap cannot be downloaded
    fetch = source.client.fetch_mapping

    async def flaky(observatory: str, name: str) -> str:
        if name == broken:
            raise SourceError(f"{name}: injected")
        return await fetch(observatory, name)

    monkeypatch.setattr(source.client, "fetch_mapping", flaky)
    watch = Watch(source, since=history[start])
    with pytest.raises(SourceError, match="injected"):
        await poll_once(watch, store, NOW)
    cursor = store.get_cursor(watch.key)
    assert cursor is not None and cursor.context == history[start + 2]  # the three before it are in
    monkeypatch.setattr(source.client, "fetch_mapping", fetch)
    server.calls.clear()
    report = await poll_once(watch, store, NOW)
    assert report.processed == history[start + 3 : end + 1]
    # The catalogue sha1s: one lookup per level for the backfill (pmaps, imaps, rmaps), not per
    # diff; and one catalogue lookup of the new files of all of them, not per activation.
    assert server.calls.count("get_file_info_map") <= 3 + 1
    kept = set(source.library)  # the parsed mappings the next diff starts from, not the whole backfill's
    assert history[end] in kept and history[start] not in kept


async def test_a_backfill_records_its_window_in_one_transaction(
    store: Store, source: CrdsSource, jwst_server_config: Path
) -> None:
    history = real_history(jwst_server_config)
    end = history.index("jwst_0500.pmap")
    writes: list[int] = []

    def committed(conn: Connection) -> None:
        if not conn.get_execution_options().get(READ_ONLY):
            writes.append(1)

    event.listen(store.engine, "commit", committed)
    report = await poll_once(Watch(source, since=history[end - 12]), store, NOW)
    event.remove(store.engine, "commit", committed)
    assert report.processed == history[end - 12 : end + 1]
    assert len(writes) == 2  # the baseline, then all 13 activations (one window) with their rows


async def test_a_backfill_transaction_holds_few_rows_and_a_failed_one_leaves_the_ones_before(
    store: Store, source: CrdsSource, jwst_server_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    history = real_history(jwst_server_config)
    end = history.index("jwst_0500.pmap")
    monkeypatch.setattr(poll, "_BATCH_ROWS", 3)  # "everything" alone has two channels
    batches: list[list[NewActivation]] = []
    record = store.aio.record_activations

    async def recorded(key: str, items: list[NewActivation], expected: Cursor | None, **kw: object) -> Cursor | None:
        if len(batches) == 3:
            raise DatabaseError("injected")
        batches.append(list(items))
        return await record(key, items, expected, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(store.aio, "record_activations", recorded)
    watch = Watch(source, since=history[end - 12])
    with pytest.raises(DatabaseError, match="injected"):
        await poll_once(watch, store, NOW)
    assert all(len(b) == 1 or sum(len(i.deliveries) for i in b) <= 3 for b in batches)
    done = [i.activation.context for b in batches[1:] for i in b]  # batches[0]: the baseline
    assert done and done == history[end - 12 : end - 12 + len(done)]
    cursor = store.get_cursor(watch.key)
    assert cursor is not None and cursor.context == done[-1]
    assert {r.context for r in store.outbox_rows(limit=500)} <= set(done)
    monkeypatch.setattr(store.aio, "record_activations", record)
    report = await poll_once(watch, store, NOW)  # resumes after the last one recorded
    assert done + report.processed == history[end - 12 : end + 1]
    rows = store.outbox_rows(limit=500)
    assert len({(r.context, r.subscriber, r.channel) for r in rows}) == len(rows)
    stored = [a.context for a in store.list_activations(watch.key, limit=100)]
    assert sorted(stored) == sorted(set(stored)) and len(stored) == 14


@pytest.mark.parametrize("kind", FAULT_KINDS)
async def test_server_faults_never_advance_the_cursor_nor_queue(
    kind: str, store: Store, source: CrdsSource, server: ReplayServer
) -> None:
    watch = Watch(source)
    await poll_once(watch, store, NOW)
    before = store.get_cursor(watch.key)
    for _ in range(3):
        server.activate_next()
    target = "download" if kind in ("truncated", "badsha1") else None
    server.inject_fault(kind, count=50, target=target, delay=2.0)
    with pytest.raises(SourceError):
        await poll_once(watch, store, NOW)
    assert store.get_cursor(watch.key) == before
    assert store.counts() == {"pending": 0, "leased": 0, "sent": 0, "dead": 0}
    assert store.list_activations(watch.key, limit=10)[0].context == "jwst_0500.pmap"
    server.clear_faults()
    report = await poll_once(watch, store, NOW)  # the next poll catches up, in order
    assert len(report.processed) == 3


async def test_downloads_are_checked_against_the_servers_catalogue(source: CrdsSource) -> None:
    """A self-consistent mapping that is not the one the server's catalogue lists is never used."""
    from crdswatch.errors import IntegrityError
    from crdswatch.sources.remote import load_for_diff

    checked: list[str] = []

    async def wrong(names: list[str]) -> dict[str, str]:
        checked.extend(names)
        return dict.fromkeys(names, "0" * 40)

    with pytest.raises(IntegrityError):
        await load_for_diff(source.fetcher, "jwst", "jwst_0500.pmap", "jwst_0501.pmap", source.library, wrong)
    assert checked and ("jwst", checked[0]) not in source.fetcher.cache
    real = await source.checksums(["jwst_0501.pmap"])
    assert len(real["jwst_0501.pmap"]) == 40
    library = await source.load_for_diff("jwst_0500.pmap", "jwst_0501.pmap")  # the real catalogue sha1s pass
    result = diff_contexts("jwst_0500.pmap", "jwst_0501.pmap", library)
    assert result.changes


async def test_edit_state_reports_each_change_against_what_was_seen(store: Store, source: CrdsSource,
                                                                     server: ReplayServer) -> None:
    """build/edit contexts have no history: a change is diffed against the context seen last."""
    watch = Watch(source, state="edit")
    assert (await poll_once(watch, store, NOW)).baseline
    server.activate_next()
    server.activate_next()
    report = await poll_once(watch, store, NOW)
    assert report.processed == ["jwst_0502.pmap"]
    seen = store.list_activations(watch.key, limit=1)[0]
    assert seen.previous_context == "jwst_0500.pmap" and seen.activation_date.startswith("2026-11-24T12:00")
    rows = store.outbox_rows(limit=50)
    # Subscribers follow "latest" unless they ask for edit: nothing queued for them.
    assert rows == []


async def test_a_backfill_announces_as_one_activation_at_a_time(
    store: Store, source: CrdsSource, jwst_server_config: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A backfill's window reads the posts once (poll._Ahead.post_names): the same announcements as
    a look-up per activation (which it falls back to when that read fails)."""
    from sqlalchemy import select

    from crdswatch.notices.upstream import Post, References
    from crdswatch.store.schema import activations, affected_lookups, attempts, cursors, deliveries

    history = real_history(jwst_server_config)
    window = history[history.index("jwst_0495.pmap"): history.index("jwst_0500.pmap") + 1]

    def post(i: int, names: tuple[str, ...]) -> Post:
        return Post("nirspec_reffiles_upd", "post", f"<p{i}@x>", None, "a@x", f"2019-07-0{i}T00:00:00Z",
                    f"post {i}", "", None, References(contexts=names))

    assert len(window) >= 4
    for i, names in enumerate([(window[2],), (window[-1], window[1]), ("jwst_0001.pmap",)], start=1):
        store.add_post(post(i, names), NOW)
    store.add_post(post(4, ()), NOW)

    def announcements(s: Store) -> dict[str, list[str]]:
        with s.engine.connect() as conn:
            rows = conn.execute(select(activations.c.context, activations.c.diff)).all()
        return {row.context: (row.diff or {}).get("announcements", []) for row in rows}

    report = await poll_once(Watch(source, since=window[0]), store, NOW)
    assert report.processed == window
    batched = announcements(store)
    assert {c for c, lines in batched.items() if lines} == {window[1], window[2], window[-1]}
    with store.engine.begin() as conn:  # again, from scratch, each activation on its own
        for table in (attempts, affected_lookups, deliveries, activations, cursors):
            conn.execute(table.delete())

    def fails() -> list[tuple[int, str]]:
        raise DatabaseError("post_names")

    monkeypatch.setattr(store, "post_names", fails)
    await poll_once(Watch(source, since=window[0]), store, NOW)
    assert announcements(store) == batched
