"""A read-only store (what `crdswatch outbox`, `subscribers list`, `preview` open): it migrates
nothing, creates nothing, writes nothing, and says clearly when the schema is not there yet."""

from __future__ import annotations

import hashlib
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory

from crdswatch.config import load_settings
from crdswatch.model import Activation
from crdswatch.notices.codec import subscriber_from_json
from crdswatch.store import NewDelivery, Store, source_key
from crdswatch.store.configured import configured_subscribers, effective_subscribers, sync_configured
from crdswatch.store.engine import MIGRATIONS, SCHEMA_HEAD, SchemaNotReady, create_store_engine
from tests.support.store_db import BACKENDS, database_url

T0 = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
WHSEC = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
KEY = source_key("https://jwst-crds.stsci.edu", "jwst", "operational")


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with database_url(request.param, tmp_path) as url:
        yield url


def fingerprint(path: Path) -> tuple[str, int]:
    return hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns


def test_schema_head_is_the_newest_migration() -> None:
    head = ScriptDirectory(str(MIGRATIONS)).get_current_head()
    assert SCHEMA_HEAD == head, f"a migration was added: set store.revision.SCHEMA_HEAD = {head!r}"


def test_read_only_store_reads_and_refuses_every_write(db_url: str) -> None:
    with Store.open(db_url, clock=lambda: T0) as writer:
        writer.upsert_subscriber("a", subscriber_from_json({"email": ["a@example.org"], "origin": "cli"}))
        writer.record_activation(KEY, Activation("2026-11-24T11:00:00", "jwst_0541.pmap", ""), "jwst_0540.pmap",
                                 {"changes": []}, [NewDelivery("a", "email:a@example.org")], None, now=T0)
    with Store.open(db_url, read_only=True) as reader:
        assert [s.name for s in reader.list_subscribers()] == ["a"]
        assert reader.counts()["pending"] == 1
        assert [a.context for a in reader.activations_of_context("jwst_0541.pmap")] == ["jwst_0541.pmap"]
        assert reader.activations_of_context("jwst_0540.pmap") == []
        with pytest.raises(Exception, match="(?i)read-only|readonly"):
            reader.upsert_subscriber("b", subscriber_from_json({"origin": "cli"}))
        with pytest.raises(Exception, match="(?i)read-only|readonly"):
            reader.remove_subscriber("a")
    with Store.open(db_url, read_only=True) as reader:
        assert [s.name for s in reader.list_subscribers()] == ["a"]


def test_read_only_open_leaves_a_sqlite_file_byte_identical(tmp_path: Path) -> None:
    """Even with committed pages still in the WAL (a daemon killed before it checkpointed),
    which a read-write connection would copy into the database file when it closes."""
    db = tmp_path / "state.db"
    Store.open(f"sqlite:///{db}").close()
    killed = ("import os, sys; from crdswatch.store import Store; from crdswatch.model import SubscriberConfig\n"
              "Store.open(sys.argv[1], run_migrations=False).upsert_subscriber('a', SubscriberConfig(origin='cli')); os._exit(0)")
    subprocess.run([sys.executable, "-c", killed, f"sqlite:///{db}"], check=True, timeout=60)
    assert Path(f"{db}-wal").stat().st_size > 0
    before = fingerprint(db)
    with Store.open(f"sqlite:///{db}", read_only=True) as reader:
        assert reader.get_subscriber("a") is not None
        assert reader.counts() == {"pending": 0, "leased": 0, "sent": 0, "dead": 0}
    assert fingerprint(db) == before


def test_read_only_open_of_a_missing_or_unmigrated_database_says_so(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "state.db"
    with pytest.raises(SchemaNotReady, match="does not exist yet"):
        Store.open(f"sqlite:///{missing}", read_only=True)
    assert not missing.parent.exists()  # nothing was created on the way

    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).close()
    before = fingerprint(empty)
    with pytest.raises(SchemaNotReady, match="has not been set up"):
        Store.open(f"sqlite:///{empty}", read_only=True)
    assert fingerprint(empty) == before


def test_read_only_open_of_an_older_schema_names_both_revisions(db_url: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    engine = create_store_engine(db_url)  # creates a SQLite file's folder
    try:
        with engine.begin() as conn:
            config.attributes["connection"] = conn
            command.upgrade(config, "0002_upstream")
    finally:
        engine.dispose()
    with pytest.raises(SchemaNotReady, match=f"at schema revision 0002_upstream, this crdswatch reads {SCHEMA_HEAD}"):
        Store.open(db_url, read_only=True)
    with Store.open(db_url) as migrated:  # a command that changes state migrates as before
        assert migrated.counts()["pending"] == 0
    with Store.open(db_url, read_only=True) as reader:
        assert reader.list_subscribers() == []


def _settings(tmp_path: Path, names: list[str]) -> Path:
    config = tmp_path / "c.toml"
    config.write_text(f'[state]\ndatabase = "sqlite:///{tmp_path}/state.db"\n' + "".join(
        f'[[subscribers]]\nname = "{n}"\nwebhook_url = "https://hooks.example.org/{n}"\n'
        f'webhook_secret = "{WHSEC}"\n' for n in names))
    return config


def test_effective_subscribers_is_what_the_sync_writes(tmp_path: Path) -> None:
    """The read-only view of the subscribers equals what the next start writes, case by case:
    a config subscriber someone unsubscribed stays unsubscribed, one taken out of the file is
    gone, one added from the command line stays, a new one appears."""
    with Store.open(f"sqlite:///{tmp_path}/state.db", clock=lambda: T0) as store:
        sync_configured(store, configured_subscribers(load_settings(_settings(tmp_path, ["kept", "dropped"]))))
        kept = store.get_subscriber("kept")
        assert kept is not None
        store.upsert_subscriber("kept", replace(kept.config, unsubscribed=("webhook:https://hooks.example.org/kept",)))
        store.upsert_subscriber("by-hand", subscriber_from_json({"webhook_url": "https://hooks.example.org/h", "origin": "cli"}))

        configured = configured_subscribers(load_settings(_settings(tmp_path, ["kept", "new"])))
        predicted = effective_subscribers(configured, store.list_subscribers())
        assert [s.name for s in predicted] == ["by-hand", "kept", "new"]
        assert predicted[1].config.unsubscribed == ("webhook:https://hooks.example.org/kept",)

        sync_configured(store, configured)
        written = store.list_subscribers()
    assert [(s.name, s.config) for s in predicted] == [(s.name, s.config) for s in written]
