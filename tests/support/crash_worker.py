"""A worker process for the crash tests: records an activation, fans out, and SIGKILLs itself on cue.

Usage: python crash_worker.py URL SENT_FILE produce|drain N KILL_AT
KILL_AT is one of: none, in_record, after_commit, after_send:I, after_mark:I.

"Sending" appends `<message-id> <idempotency key>` to SENT_FILE and fsyncs, so a send that
happened before the kill is visible to the test, exactly as a mail server's spool would be.
"""

from __future__ import annotations

import os
import signal
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import event

from crdswatch.model import Activation
from crdswatch.store import Delivery, NewDelivery, RetryPolicy, Store, message_id, source_key

__all__ = ["ACTIVATION", "DOMAIN", "KEY", "LEASE_SECONDS", "T0", "main"]

KEY = source_key("https://jwst-crds.stsci.edu", "jwst", "operational")
ACTIVATION = Activation("2024-06-01T00:00:00+00:00", "jwst_1234.pmap", "crash test")
T0 = datetime(2024, 6, 1, 0, 5, tzinfo=UTC)
LEASE_SECONDS = 60
DOMAIN = "crdswatch.test"


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def send(sent_file: str, d: Delivery) -> None:
    with open(sent_file, "a", encoding="utf-8") as f:
        f.write(f"{message_id(d.idempotency_key, DOMAIN)} {d.idempotency_key}\n")
        f.flush()
        os.fsync(f.fileno())


def kill_inside_record(store: Store) -> None:
    """SIGKILL just after the outbox INSERT ran but before COMMIT: the transaction must vanish."""

    def after(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO DELIVERIES"):
            die()

    event.listen(store.engine, "after_cursor_execute", after)


def produce(store: Store, sent_file: str, n: int, kill_at: str) -> None:
    if kill_at == "in_record":
        kill_inside_record(store)
    fan = [NewDelivery(f"sub{i}", "email", {"i": i}) for i in range(n)]
    cursor = store.get_cursor(KEY)
    store.record_activation(KEY, ACTIVATION, "jwst_1233.pmap", None, fan, cursor, now=T0)
    if kill_at == "after_commit":
        die()
    for i, d in enumerate(store.claim("w-first", T0, LEASE_SECONDS, n)):
        send(sent_file, d)
        if kill_at == f"after_send:{i}":
            die()  # sent, not yet marked: the at-least-once gap
        store.mark_sent(d.id, "w-first", T0, "sent")
        if kill_at == f"after_mark:{i}":
            die()


def drain(store: Store, sent_file: str) -> None:
    # The restarted worker runs after the dead worker's leases have expired.
    now = T0 + timedelta(seconds=LEASE_SECONDS + 1)
    while batch := store.claim("w-restart", now, LEASE_SECONDS, 3):
        for d in batch:
            send(sent_file, d)
            store.mark_sent(d.id, "w-restart", now, "sent")


def main(argv: list[str]) -> None:
    url, sent_file, mode, n, kill_at = argv
    with Store.open(url, policy=RetryPolicy(max_attempts=5)) as store:
        if mode == "produce":
            produce(store, sent_file, int(n), kill_at)
        else:
            drain(store, sent_file)


if __name__ == "__main__":
    main(sys.argv[1:])
