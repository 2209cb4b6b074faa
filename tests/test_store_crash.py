"""Crash safety of record-then-deliver: SIGKILL a worker at chosen points, restart, check delivery.

What is guaranteed, honestly stated: the outbox gives at-least-once *sending*. A worker that sends
and is killed before `mark_sent` commits leaves a leased row; after the lease expires a restarted
worker sends it again. No store can close that gap, because the send and the commit are two
systems. What closes it end to end is the idempotency key: every notice carries a Message-ID
derived from its key, so the receiver (here: the sink reader, as a mail client or webhook consumer
would) drops the duplicate. So: each key is *sent* at least once, *recorded sent* exactly once in
the store, and *delivered* effectively once after receiver-side de-duplication.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from crdswatch.store import Store, activation_ref, idempotency_key, message_id
from tests.support import crash_worker as cw
from tests.support.store_db import BACKENDS, database_url

N = 6
WORKER = Path(cw.__file__)
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with database_url(request.param, tmp_path) as url:
        yield url


def run_worker(url: str, sent: Path, mode: str, kill_at: str = "none") -> int:
    proc = subprocess.run(
        [sys.executable, str(WORKER), url, str(sent), mode, str(N), kill_at],
        check=False,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if proc.returncode not in (0, -signal.SIGKILL):
        pytest.fail(f"worker {mode} {kill_at} failed ({proc.returncode}):\n{proc.stderr}")
    return proc.returncode


def expected_keys() -> set[str]:
    return {idempotency_key(activation_ref(cw.ACTIVATION), cw.KEY, f"sub{i}", "email") for i in range(N)}


def received(sent: Path) -> tuple[Counter[str], dict[str, str]]:
    """The raw sends per key, and what a de-duplicating receiver keeps (first per Message-ID)."""
    lines = sent.read_text().splitlines() if sent.exists() else []
    raw = Counter(line.split()[1] for line in lines)
    inbox: dict[str, str] = {}
    for line in lines:
        mid, key = line.split()
        inbox.setdefault(mid, key)
    return raw, inbox


@pytest.mark.parametrize(
    ("kill_at", "resent", "expired"),
    [
        ("after_commit", 0, 0),  # cursor and outbox committed, nothing claimed or sent yet
        ("after_send:2", 1, 4),  # mid fan-out: the third notice sent but not marked sent
        ("after_mark:2", 0, 3),  # mid fan-out: three sent and recorded, three still leased
        ("after_send:0", 1, 6),  # the very first send is in flight
    ],
)
def test_sigkill_then_restart_delivers_every_key(
    db_url: str, tmp_path: Path, kill_at: str, resent: int, expired: int
) -> None:
    """`resent`: keys sent twice; `expired`: leases the killed worker held that the restart took over."""
    sent = tmp_path / "sent.log"
    assert run_worker(db_url, sent, "produce", kill_at) == -signal.SIGKILL
    assert run_worker(db_url, sent, "drain") == 0

    raw, inbox = received(sent)
    keys = expected_keys()
    assert set(raw) == keys  # at-least-once: every key went out
    assert sum(raw.values()) == N + resent  # the only duplicates are the in-flight sends
    assert sorted(inbox.values()) == sorted(keys)  # effectively once after de-duplication
    assert all(message_id(k, cw.DOMAIN) in inbox for k in keys)
    _assert_recorded_sent_exactly_once(db_url, expired)


def test_sigkill_inside_the_record_transaction_leaves_nothing(db_url: str, tmp_path: Path) -> None:
    sent = tmp_path / "sent.log"
    assert run_worker(db_url, sent, "produce", "in_record") == -signal.SIGKILL
    with Store.open(db_url) as store:
        assert store.get_cursor(cw.KEY) is None  # the poll will see the activation again
        assert store.counts() == {"pending": 0, "leased": 0, "sent": 0, "dead": 0}
        assert store.list_activations() == []
    assert run_worker(db_url, sent, "produce") == 0  # the restarted daemon processes it afresh
    raw, _ = received(sent)
    assert raw == Counter(dict.fromkeys(expected_keys(), 1))
    _assert_recorded_sent_exactly_once(db_url, 0)


def _assert_recorded_sent_exactly_once(db_url: str, expired: int) -> None:
    with Store.open(db_url) as store:
        assert store.counts() == {"pending": 0, "leased": 0, "sent": N, "dead": 0}
        rows = store.outbox_rows(limit=100)
        outcomes = [[a.outcome for a in store.attempts(r.id)] for r in rows]
    assert all(o.count("sent") == 1 for o in outcomes)
    assert sum(o.count("lease_expired") for o in outcomes) == expired
