"""The state store and outbox contract, run identically on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, select, text
from sqlalchemy.exc import StatementError

from crdswatch.errors import PermanentDeliveryError, TransientDeliveryError
from crdswatch.model import Activation, Change, DiffResult, SubscriberConfig
from crdswatch.notices.codec import subscriber_from_json
from crdswatch.store import (
    Cursor,
    NewActivation,
    NewDelivery,
    RetryPolicy,
    Store,
    activation_ref,
    idempotency_key,
    message_id,
    source_key,
)
from crdswatch.store.schema import subscribers
from tests.support.store_db import BACKENDS, database_url

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
KEY = source_key("https://hst-crds.stsci.edu/", "hst", "operational")
ACT1 = Activation("2024-05-01T11:00:00+00:00", "hst_1100.pmap", "first")
ACT2 = Activation("2024-05-02T11:00:00+00:00", "hst_1101.pmap", "second")
DIFF = DiffResult(
    "hst_1099.pmap",
    "hst_1100.pmap",
    (Change("hst_1099.pmap", "hst_1100.pmap", "pipeline", "replaced", "line", instrument="acs"),),
)
POLICY = RetryPolicy(base_seconds=10, max_seconds=1000, max_attempts=3, jitter=lambda: 0.5)


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with database_url(request.param, tmp_path) as url:
        yield url


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    with Store.open(db_url, policy=POLICY, clock=lambda: T0) as s:
        yield s


def fanout(n: int, channel: str = "email") -> list[NewDelivery]:
    return [NewDelivery(f"sub{i}", channel, {"n": i}) for i in range(n)]


def record(store: Store, n: int = 3, act: Activation = ACT1, expected: Cursor | None = None) -> bool:
    return store.record_activation(KEY, act, "hst_1099.pmap", DIFF, fanout(n), expected, now=T0)


# -- schema ------------------------------------------------------------------------------------


def test_migrations_create_schema_on_empty_db_and_rerun_cleanly(db_url: str) -> None:
    Store.open(db_url).close()
    with Store.open(db_url) as again:  # a second start finds head and changes nothing
        names = set(inspect(again.engine).get_table_names())
        with again.engine.connect() as conn:
            version = conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
    assert {"cursors", "activations", "subscribers", "deliveries", "delivery_attempts"} <= names
    # One linear chain of migrations, and the database at its only head.
    from alembic.script import ScriptDirectory

    from crdswatch.store.engine import MIGRATIONS

    heads = ScriptDirectory(str(MIGRATIONS)).get_heads()
    assert len(heads) == 1, f"alembic migrations have several heads: {heads}"
    assert version == heads[0]


def test_sqlite_uses_wal_and_busy_timeout(tmp_path: Path) -> None:
    with Store.open(f"sqlite:///{tmp_path}/s.db") as s, s.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert (conn.exec_driver_sql("PRAGMA busy_timeout").scalar() or 0) >= 1000


# -- record_activation -------------------------------------------------------------------------


def test_record_activation_commits_cursor_activation_and_outbox(store: Store) -> None:
    assert store.get_cursor(KEY) is None
    assert record(store, 3)
    cursor = store.get_cursor(KEY)
    assert cursor is not None and (cursor.context, cursor.version) == ("hst_1100.pmap", 1)
    assert cursor.activation_date == ACT1.date
    (seen,) = store.list_activations(KEY)
    assert seen.diff == DIFF.to_json() and seen.previous_context == "hst_1099.pmap"
    rows = store.outbox_rows()
    assert store.counts() == {"pending": 3, "leased": 0, "sent": 0, "dead": 0}
    assert {r.idempotency_key for r in rows} == {
        idempotency_key(activation_ref(ACT1), KEY, f"sub{i}", "email") for i in range(3)
    }
    assert all(r.next_attempt_at == T0 and r.max_attempts == 3 for r in rows)


@pytest.mark.parametrize("first", [True, False], ids=["insert-cursor", "update-cursor"])
def test_failure_midway_commits_nothing(store: Store, first: bool) -> None:
    expected = None
    if not first:
        assert record(store, 1)
        expected = store.get_cursor(KEY)
    before = (store.get_cursor(KEY), store.counts(), store.list_activations())
    # The cursor and activation statements run before this unserialisable payload fails.
    bad = [*fanout(2), NewDelivery("bad", "email", {"oops": object()})]
    with pytest.raises((TypeError, StatementError)):
        store.record_activation(KEY, ACT2, "x", DIFF, bad, expected, now=T0)
    assert (store.get_cursor(KEY), store.counts(), store.list_activations()) == before


ACT3 = Activation("2024-05-03T11:00:00+00:00", "hst_1102.pmap", "third")


def test_record_activations_commits_several_in_order_and_returns_the_cursor(store: Store) -> None:
    assert record(store, 1)
    start = store.get_cursor(KEY)
    items = [NewActivation(ACT2, ACT1.context, DIFF.to_json(), fanout(2)),
             NewActivation(ACT3, ACT2.context, None, fanout(3, "slack"))]
    cursor = store.record_activations(KEY, items, start, now=T0)
    assert cursor == store.get_cursor(KEY)  # the one written: nothing to read back
    assert cursor is not None and (cursor.context, cursor.activation_date, cursor.version) == (ACT3.context, ACT3.date, 3)
    seen = store.list_activations(KEY)
    assert [(a.context, a.previous_context) for a in seen] == [
        (ACT3.context, ACT2.context), (ACT2.context, ACT1.context), (ACT1.context, "hst_1099.pmap")]
    by_context = {a.context: a.id for a in seen}
    rows = store.outbox_rows(limit=20)
    assert sorted((r.context, r.channel, r.activation_id) for r in rows) == sorted(
        [(ACT1.context, "email", by_context[ACT1.context])] + [(ACT2.context, "email", by_context[ACT2.context])] * 2
        + [(ACT3.context, "slack", by_context[ACT3.context])] * 3)
    # a stale expectation (another replica's cursor moved first) writes none of them
    before = (store.get_cursor(KEY), store.counts(), store.list_activations())
    assert store.record_activations(KEY, [NewActivation(ACT1, ACT3.context, None, fanout(4))], start, now=T0) is None
    assert (store.get_cursor(KEY), store.counts(), store.list_activations()) == before


def test_record_activations_failing_at_a_later_one_commits_none_of_them(store: Store) -> None:
    bad = [*fanout(2), NewDelivery("bad", "email", {"oops": object()})]
    items = [NewActivation(ACT1, "hst_1099.pmap", None, fanout(2)), NewActivation(ACT2, ACT1.context, None, bad)]
    with pytest.raises((TypeError, StatementError)):
        store.record_activations(KEY, items, None, now=T0)
    assert (store.get_cursor(KEY), store.counts()["pending"], store.list_activations()) == (None, 0, [])


def test_same_idempotency_key_inserted_twice_is_a_noop(store: Store) -> None:
    assert record(store, 2)
    cursor = store.get_cursor(KEY)
    # A replay of the same activation (e.g. after a restore) adds only the genuinely new row.
    more = [*fanout(2), NewDelivery("sub9", "slack")]
    assert store.record_activation(KEY, ACT1, "hst_1099.pmap", DIFF, more, cursor, now=T0)
    assert store.counts()["pending"] == 3
    assert len(store.list_activations()) == 1


def test_idempotency_key_and_message_id_are_stable_and_distinct() -> None:
    k = idempotency_key("c.pmap", KEY, "alice", "email")
    assert k == idempotency_key("c.pmap", KEY, "alice", "email")
    assert (
        len(
            {
                k,
                idempotency_key("c.pmap", KEY, "alice", "slack"),
                idempotency_key("c.pmap", KEY, "bob", "email"),
            }
        )
        == 3
    )
    # JSON framing: moving a separator between fields must not collide.
    assert idempotency_key("a|b", "c", "d", "e") != idempotency_key("a", "b|c", "d", "e")
    mid = message_id(k, "example.org")
    assert mid == message_id(k, "example.org") and mid.startswith("<") and mid.endswith("@example.org>")
    assert mid != message_id(idempotency_key("x", KEY, "alice", "email"), "example.org")


def test_cas_lets_one_of_two_stores_win(store: Store, db_url: str) -> None:
    with Store.open(db_url, policy=POLICY) as other:
        assert store.get_cursor(KEY) is None and other.get_cursor(KEY) is None
        assert record(store, 2)
        assert not record(other, 5)  # stale expectation: nothing of it may land
        assert store.counts()["pending"] == 2
        seen = store.get_cursor(KEY)
        results = _race(
            lambda: record(store, 2, ACT2, seen),
            lambda: other.record_activation(KEY, ACT2, "b", DIFF, fanout(4, "slack"), seen, now=T0),
        )
    assert results.count(True) == 1 and results.count(False) == 1
    cursor = store.get_cursor(KEY)
    assert cursor is not None and cursor.version == 2 and cursor.context == ACT2.context
    assert store.counts()["pending"] in (4, 6)


def _race(*fns: Callable[[], object]) -> list[object]:
    """Run the callables at the same moment on threads; return their results in order."""
    barrier = threading.Barrier(len(fns))
    results: list[object] = [None] * len(fns)

    def run(i: int, fn: Callable[[], object]) -> None:
        barrier.wait()
        results[i] = fn()

    threads = [threading.Thread(target=run, args=(i, f)) for i, f in enumerate(fns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return results


# -- claiming and leases -----------------------------------------------------------------------


def test_claim_leases_due_rows_until_expiry(store: Store) -> None:
    record(store, 3)
    first = store.claim("w1", T0, lease_seconds=60, limit=2)
    assert len(first) == 2 and all(d.status == "leased" and d.lease_owner == "w1" for d in first)
    assert first[0].lease_expires_at == T0 + timedelta(seconds=60)
    rest = store.claim("w2", T0 + timedelta(seconds=30), 60, 10)
    assert [d.id for d in rest] == [d.id for d in store.outbox_rows()][:1]  # only the unleased row
    assert store.claim("w2", T0 + timedelta(seconds=59), 60, 10) == []
    late = T0 + timedelta(seconds=61)
    stolen = store.claim("w2", late, 60, 10)
    assert {d.id for d in stolen} == {d.id for d in first}
    assert all(d.attempts == 1 for d in stolen)  # the expired lease counts as an attempt
    assert [a.outcome for a in store.attempts(first[0].id)] == ["lease_expired"]
    assert not store.mark_sent(first[0].id, "w1", late, "too late")  # w1 lost its lease
    assert store.mark_sent(first[0].id, "w2", late, "250 ok")


def test_renewing_a_lease_keeps_the_rows_from_other_workers(store: Store) -> None:
    record(store, 3)
    held = store.claim("w1", T0, lease_seconds=10, limit=2)
    ids = [d.id for d in held]
    assert store.renew("w1", ids, T0 + timedelta(seconds=8), 10) == sorted(ids)
    assert {d.id: d.lease_expires_at for d in store.outbox_rows() if d.id in ids} == dict.fromkeys(
        ids, T0 + timedelta(seconds=18))
    # past the first lease, within the renewed one: nobody else can take them
    assert [d.id for d in store.claim("w2", T0 + timedelta(seconds=15), 10, 10)] == [
        d.id for d in store.outbox_rows() if d.id not in ids]
    assert store.renew("w2", ids, T0 + timedelta(seconds=15), 10) == []  # not w2's to renew
    # a renewal that came too late: w2 took the rows, w1 learns they are no longer its own
    stolen = store.claim("w2", T0 + timedelta(seconds=19), 10, 10)
    assert {d.id for d in stolen} == set(ids)
    assert store.renew("w1", ids, T0 + timedelta(seconds=19), 10) == []
    assert store.mark_sent(ids[0], "w2", T0 + timedelta(seconds=20))
    assert store.renew("w2", ids, T0 + timedelta(seconds=20), 10) == [ids[1]]  # a recorded row is done
    assert store.renew("w2", [], T0, 10) == []


def test_rows_not_yet_due_are_not_claimed(store: Store) -> None:
    record(store, 1)
    (d,) = store.claim("w", T0, 60, 10)
    store.mark_failed(d.id, "w", T0, TransientDeliveryError("busy"))
    assert store.claim("w", T0 + timedelta(seconds=7), 60, 10) == []
    assert len(store.claim("w", T0 + timedelta(seconds=8), 60, 10)) == 1


def test_two_workers_never_claim_the_same_row(store: Store, db_url: str) -> None:
    store.record_activation(KEY, ACT1, None, None, fanout(60), None, now=T0)
    stores = [Store.open(db_url, policy=POLICY) for _ in range(4)]
    claimed: list[list[int]] = [[] for _ in stores]

    def drain(i: int) -> None:
        while batch := stores[i].claim(f"w{i}", T0, 300, 3):
            claimed[i].extend(d.id for d in batch)

    try:
        _race(*[lambda i=i: drain(i) for i in range(len(stores))])
    finally:
        for s in stores:
            s.close()
    every = [i for ids in claimed for i in ids]
    assert len(every) == len(set(every)) == 60
    assert store.counts()["leased"] == 60


@pytest.fixture
def pg_url(tmp_path: Path) -> Iterator[str]:
    with database_url("postgresql", tmp_path) as url:
        yield url


def test_postgres_claim_skips_rows_locked_by_another_connection(pg_url: str) -> None:
    """SKIP LOCKED is PostgreSQL-only (SQLite serialises writers), so this runs there alone."""
    other = create_engine(pg_url)
    with Store.open(pg_url, policy=POLICY) as store:
        record(store, 4)
        ids = sorted(d.id for d in store.outbox_rows())
        try:
            with other.begin() as conn:
                # Another replica mid-claim holds row locks on the first two rows.
                lock = text("SELECT id FROM deliveries WHERE id IN (:a, :b) FOR UPDATE")
                conn.execute(lock, {"a": ids[0], "b": ids[1]})
                started = time.monotonic()
                got = store.claim("w", T0, 60, 10)
                assert time.monotonic() - started < 5  # did not wait for the lock
            assert sorted(d.id for d in got) == ids[2:]
            assert sorted(d.id for d in store.claim("w2", T0, 60, 10)) == ids[:2]  # free again
        finally:
            other.dispose()


# -- outcomes ----------------------------------------------------------------------------------


def test_transient_failure_backs_off_with_jitter_and_honours_retry_after(store: Store) -> None:
    record(store, 2)
    a, b = store.claim("w", T0, 60, 10)
    assert store.mark_failed(a.id, "w", T0, TransientDeliveryError("451 try later")) == "pending"
    assert store.mark_failed(b.id, "w", T0, TransientDeliveryError("429", retry_after=120)) == "pending"
    ra, rb = store.get_delivery(a.id), store.get_delivery(b.id)
    assert ra is not None and rb is not None
    # base 10s, first attempt: 10/2 + 10/2 * jitter(0.5) = 7.5s
    assert ra.next_attempt_at == T0 + timedelta(seconds=7.5) and ra.status == "pending"
    assert rb.next_attempt_at == T0 + timedelta(seconds=120)
    assert (
        ra.attempts == 1
        and ra.lease_owner is None
        and ra.last_error == "TransientDeliveryError: 451 try later"
    )
    # second failure doubles the window: 20/2 + 20/2 * 0.5 = 15s
    t1 = T0 + timedelta(seconds=8)
    store.claim("w", t1, 60, 1)
    store.mark_failed(a.id, "w", t1, TransientDeliveryError("again"))
    again = store.get_delivery(a.id)
    assert again is not None and again.next_attempt_at == t1 + timedelta(seconds=15)


def test_retry_policy_caps_and_jitter_bounds() -> None:
    policy = RetryPolicy(base_seconds=30, max_seconds=100, jitter=lambda: 0.999)
    assert policy.delay(10) <= timedelta(seconds=100)
    assert RetryPolicy(base_seconds=30, jitter=lambda: 0.0).delay(1) == timedelta(seconds=15)
    assert policy.delay(1, retry_after=-5) == timedelta(0)


def test_dead_letter_after_max_attempts(store: Store) -> None:
    record(store, 1)
    now = T0
    for attempt in range(1, 4):
        (d,) = store.claim("w", now, 60, 1)
        status = store.mark_failed(d.id, "w", now, TransientDeliveryError(f"fail {attempt}"))
        now += timedelta(hours=1)
    assert status == "dead"
    row = store.get_delivery(d.id)
    assert row is not None and row.status == "dead" and row.attempts == 3
    assert row.last_error == "TransientDeliveryError: fail 3"
    assert [a.outcome for a in store.attempts(d.id)] == ["transient"] * 3
    assert store.claim("w", now, 60, 1) == []


def test_permanent_error_dead_letters_at_once(store: Store) -> None:
    record(store, 1)
    (d,) = store.claim("w", T0, 60, 1)
    assert store.mark_failed(d.id, "w", T0, PermanentDeliveryError("550 no such user")) == "dead"
    row = store.get_delivery(d.id)
    assert row is not None and row.last_error == "PermanentDeliveryError: 550 no such user"
    assert [(a.attempt, a.outcome, a.worker_id) for a in store.attempts(d.id)] == [(1, "permanent", "w")]


def test_repeated_lease_expiry_dead_letters_a_poison_row(store: Store) -> None:
    record(store, 1)
    now = T0
    for _ in range(3):  # the worker "crashes" every time: it never reports an outcome
        store.claim("w", now, 60, 1)
        now += timedelta(seconds=61)
    assert store.claim("w", now, 60, 1) == []
    (row,) = store.outbox_rows("dead")
    assert row.attempts == 3 and row.last_error is not None and "lease" in row.last_error


def test_requeue_dead_gives_fresh_attempts(store: Store) -> None:
    record(store, 1)
    (d,) = store.claim("w", T0, 60, 1)
    store.mark_failed(d.id, "w", T0, PermanentDeliveryError("nope"))
    later = T0 + timedelta(days=1)
    assert store.requeue_dead(d.id, later) and not store.requeue_dead(d.id, later)
    (again,) = store.claim("w", later, 60, 1)
    assert again.id == d.id and again.attempts == 0


def test_release_returns_leases_on_shutdown(store: Store) -> None:
    record(store, 3)
    mine = store.claim("w1", T0, 600, 2)
    assert store.release("w1", T0) == 2
    assert store.counts() == {"pending": 3, "leased": 0, "sent": 0, "dead": 0}
    taken = store.claim("w2", T0, 600, 10)  # available at once, not after the lease
    assert {d.id for d in mine} <= {d.id for d in taken} and all(d.attempts == 0 for d in taken)
    assert store.release("w1", T0) == 0


def test_counts_and_outbox_rows_for_the_cli(store: Store) -> None:
    record(store, 4)
    a, b, _ = store.claim("w", T0, 60, 3)
    store.mark_sent(a.id, "w", T0, "250 queued as X")
    store.mark_failed(b.id, "w", T0, PermanentDeliveryError("bad address"))
    assert store.counts() == {"pending": 1, "leased": 1, "sent": 1, "dead": 1}
    (sent,) = store.outbox_rows("sent")
    assert sent.id == a.id and sent.detail == "250 queued as X" and sent.sent_at == T0
    assert [r.id for r in store.outbox_rows(limit=2)] == sorted(
        (r.id for r in store.outbox_rows()), reverse=True
    )[:2]
    assert [x.outcome for x in store.attempts(a.id)] == ["sent"]
    as_json = json.loads(json.dumps(sent.to_json()))
    assert as_json["sent_at"] == "2024-05-01T12:00:00+00:00" and as_json["status"] == "sent"


# -- subscribers and time ----------------------------------------------------------------------


def test_subscribers_crud(store: Store) -> None:
    store.upsert_subscriber("alice", SubscriberConfig(email=("a@example.org",)))
    store.upsert_subscriber("bob", SubscriberConfig(origin="cli"))
    changed = SubscriberConfig(slack_webhook="https://hooks.slack.com/x", instruments=("acs",),
                               parameters={"DETECTOR": ("WFC",)}, unsubscribed=("email:a@example.org",))
    store.upsert_subscriber("alice", changed)
    alice = store.get_subscriber("alice")
    assert alice is not None and alice.config == changed
    assert store.get_subscribers(["alice", "nobody"]) == {"alice": alice}
    assert [s.name for s in store.list_subscribers()] == ["alice", "bob"]
    assert store.remove_subscriber("bob") and not store.remove_subscriber("bob")
    assert store.get_subscriber("bob") is None


def test_subscriber_rows_in_every_stored_shape_decode(store: Store) -> None:
    """Rows written by earlier versions, straight into the JSON column: each reads back typed,
    and a rewrite keeps what this version does not know."""
    from tests.test_subscriber_codec import CONFIGURED, LIST_MEMBER

    rows = {
        "configured": CONFIGURED,
        "member": LIST_MEMBER,
        "old": {"email": ["old@example.org"], "states": None, "digest_hour": None, "programs": ["01234"],
                "own": "not a table", "datasets": ["not a table"]},
        "first": {"channels": ["slack"], "filters": {"instrument": ["acs"]}},  # the first contract's shape
    }
    with store.engine.begin() as conn:
        for name, config in rows.items():
            conn.execute(subscribers.insert().values(name=name, config=config, created_at=T0, updated_at=T0))
    found = {s.name: s.config for s in store.list_subscribers()}
    assert found == {name: subscriber_from_json(config) for name, config in rows.items()}
    assert found["configured"].webhook_secret == "whsec_c2VjcmV0" and found["member"].list_name == "miri-news"
    assert found["old"] == SubscriberConfig(email=("old@example.org",), programs=("01234",))
    assert found["first"].extra == rows["first"]
    store.upsert_subscriber("first", found["first"])
    with store.engine.connect() as conn:
        stored = conn.execute(select(subscribers.c.config).where(subscribers.c.name == "first")).scalar_one()
    assert {k: stored[k] for k in rows["first"]} == rows["first"]


def test_times_are_stored_as_utc_and_naive_times_refused(store: Store) -> None:
    plus2 = timezone(timedelta(hours=2))
    record(store, 1)
    (d,) = store.claim("w", T0.astimezone(plus2), 60, 1)
    assert d.lease_expires_at == T0 + timedelta(seconds=60)
    assert d.lease_expires_at is not None and d.lease_expires_at.utcoffset() == timedelta(0)
    with pytest.raises(Exception, match="naive"):
        store.claim("w", datetime(2024, 1, 1), 60, 1)


def test_key_helpers_import_without_sqlalchemy() -> None:
    """Channels and the CLI import `crdswatch.store` for `message_id`; SQLAlchemy loads with Store only."""
    code = (
        "import sys, crdswatch.store as s; s.message_id('k', 'd'); "
        "assert 'sqlalchemy' not in sys.modules; s.Store; assert 'sqlalchemy' in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_reactivated_context_is_a_new_activation_and_digests_wait(store: Store) -> None:
    """A revert re-activates an old context at a new date: it must queue fresh notices."""
    first = Activation("2024-05-01T11:00:00+00:00", "hst_1100.pmap", "first")
    again = Activation("2024-06-01T11:00:00+00:00", "hst_1100.pmap", "revert")
    assert store.record_activation(KEY, first, None, None, [NewDelivery("alice", "email")], None, now=T0)
    cursor = store.get_cursor(KEY)
    slot = T0 + timedelta(days=1)
    held = [NewDelivery("alice", "email"), NewDelivery("bob", "email", not_before=slot)]
    assert store.record_activation(KEY, again, "hst_1101.pmap", None, held, cursor, now=T0)
    assert len(store.list_activations(KEY)) == 2
    assert store.counts()["pending"] == 3
    due_now = store.claim("w", T0, 60, 10)
    assert [r.subscriber for r in due_now] == ["alice", "alice"]
    for row in due_now:
        assert store.mark_sent(row.id, "w", T0)
    assert [r.subscriber for r in store.claim("w", slot, 60, 10)] == ["bob"]


def test_source_keys_never_hold_credentials() -> None:
    assert source_key("https://user:secret@crds.example.org:8443/", "jwst", "latest") == (
        "https://crds.example.org:8443|jwst|latest"
    )
    assert source_key("https://jwst-crds.stsci.edu", "jwst", "build") == "https://jwst-crds.stsci.edu|jwst|build"


def test_defer_hands_a_row_back_untried(store: Store) -> None:
    assert record(store, 1)
    (row,) = store.claim("w", T0, 60, 10)
    later = T0 + timedelta(minutes=5)
    assert not store.defer(row.id, "someone-else", later, T0)  # only the lease holder may
    assert store.defer(row.id, "w", later, T0)
    back = store.get_delivery(row.id)
    assert back is not None and back.status == "pending" and back.attempts == 0
    assert back.next_attempt_at == later and store.attempts(row.id) == []
    assert store.claim("w", T0, 60, 10) == []
    assert [r.id for r in store.claim("w", later, 60, 10)] == [row.id]


def test_a_source_key_is_made_and_split_in_one_place() -> None:
    from crdswatch.model import SourceKey

    key = SourceKey.of("https://user:secret@crds.example.org:8443/", "jwst", "latest")
    assert key == SourceKey("https://crds.example.org:8443", "jwst", "latest")
    assert str(key) == source_key("https://user:secret@crds.example.org:8443/", "jwst", "latest")
    assert SourceKey.parse(str(key)) == key
    assert SourceKey.parse("http://h/a|b|jwst|operational") == SourceKey("http://h/a|b", "jwst", "operational")


def test_the_codec_owns_the_seen_activation_record(store: Store) -> None:
    """The poll's record goes in through notices.codec and comes back out through it, whole;
    find_activation is the one lookup of an activation by context (a baseline is never found)."""
    from crdswatch.model import ActivationDiff, FileInfo
    from crdswatch.notices.codec import (
        activation_record,
        record_catalog,
        record_changes,
        stored_activation_diff,
    )

    info = FileInfo(name="x_flt.fits", pedigree="INFLIGHT", description="bias")
    planned = ActivationDiff("hst", "https://hst-crds.stsci.edu", "operational", ACT1, "hst_1099.pmap",
                             DIFF.changes, {"x_flt.fits": info}, revert=False, announcements=("posted on list",))
    assert store.record_activation(KEY, ACT1, "hst_1099.pmap", activation_record(DIFF, planned), [], None, now=T0)
    assert store.find_activation("hst_1099.pmap") is None
    seen = store.find_activation("hst_1100.pmap")
    assert seen is not None and seen.context == "hst_1100.pmap"
    assert record_changes(seen.diff) == DIFF.changes and record_catalog(seen.diff) == {"x_flt.fits": info}
    assert stored_activation_diff(seen.source_key, ACT1, seen.previous_context, seen.diff) == planned
    assert record_changes(None) == () and record_catalog(None) == {}


def test_secret_urls_are_the_stored_webhook_and_slack_urls(store: Store) -> None:
    store.upsert_subscriber("hook", SubscriberConfig(webhook_url="https://h.example.org/in/abc123"))
    store.upsert_subscriber("slack", SubscriberConfig(slack_webhook="https://hooks.slack.example/T0/B0/xyz789"))
    store.upsert_subscriber("both", SubscriberConfig(email=("b@example.org",), webhook_url="https://h.example.org/b"))
    store.upsert_subscriber("mail", SubscriberConfig(email=("webhook@example.org",)))  # the word alone is no URL
    assert store.secret_urls() == {"https://h.example.org/in/abc123", "https://hooks.slack.example/T0/B0/xyz789",
                                   "https://h.example.org/b"}
