"""`crdswatch outbox --json` on SQLite takes a path of its own (cli.fast: no settings models, typer or
SQLAlchemy); it must print exactly what the full command prints, and hand anything else over."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from crdswatch.cli import ops
from crdswatch.cli.fast import fast_outbox
from crdswatch.errors import PermanentDeliveryError, TransientDeliveryError
from crdswatch.model import Activation
from crdswatch.store import NewDelivery, Outcome, Store
from tests.support.store_db import BACKENDS, database_url

T0 = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
KEY = "https://jwst-crds.stsci.edu|jwst|latest"


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with database_url(request.param, tmp_path) as url:
        yield url


def _populated(tmp_path: Path, url: str | None = None) -> Path:
    url = url or f"sqlite:///{tmp_path}/state.db"
    config = tmp_path / "c.toml"
    config.write_text(f'[state]\ndatabase = "{url}"\n')
    store = Store.open(url)
    act = Activation("2026-03-01T11:00:00+00:00", "jwst_0541.pmap")
    rows = [NewDelivery(f"s{i}", f"email:s{i}@example.org", {"sel": [0], "reason": "r"}) for i in range(6)]
    rows.append(NewDelivery("digest", "email:d@example.org", {"sel": [0]}, not_before=T0 + timedelta(days=1)))
    assert store.record_activation(KEY, act, "jwst_0540.pmap", {"changes": []}, rows, None, now=T0)
    claimed = store.claim("w1", T0, 60, 4)
    store.record_outcomes([Outcome(claimed[0].id), Outcome(claimed[1].id, TransientDeliveryError("421 later")),
                           Outcome(claimed[2].id, PermanentDeliveryError("550 no such user"))], "w1",
                          T0 + timedelta(seconds=1))
    store.close()  # claimed[3] stays leased
    return config


def _full(capsys: pytest.CaptureFixture[str], config: Path, status: str | None = None, limit: int = 50) -> str:
    ops.outbox(config=config, status=status, limit=limit, requeue=None, as_json=True)
    return capsys.readouterr().out


def _fast(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int | None, str]:
    status = fast_outbox(list(argv))
    return status, capsys.readouterr().out


def test_the_fast_path_prints_what_the_full_command_prints(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                            monkeypatch: pytest.MonkeyPatch, db_url: str) -> None:
    config = _populated(tmp_path, db_url)
    monkeypatch.setattr(sys.stdout, "isatty", lambda: False)
    full = _full(capsys, config)
    status, fast = _fast(capsys, "outbox", "--json", "--config", str(config))
    assert status == 0 and fast == full
    data = json.loads(fast)
    assert data["counts"] == {"pending": 4, "leased": 1, "sent": 1, "dead": 1}
    assert {r["status"] for r in data["rows"]} == {"pending", "leased", "sent", "dead"}
    for state in ("pending", "sent", "dead", "leased"):
        full = _full(capsys, config, status=state, limit=2)
        assert _fast(capsys, "outbox", "-c", str(config), "--status", state, "--limit", "2", "--json") == (0, full)


def test_anything_else_goes_to_the_full_command(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    config = _populated(tmp_path)
    c = ("--config", str(config))
    for argv in (("outbox", *c), ("outbox", "--json", "--requeue", "3", *c), ("outbox", "--json", "--status", "x", *c),
                 ("outbox", "--json", "--limit", "-1", *c), ("outbox", "--json", "--json", *c),
                 ("outbox", "--json", "--config"), ("outbox", "--json", "--config", str(tmp_path / "missing.toml"))):
        assert fast_outbox(list(argv)) is None, argv
    bad = tmp_path / "bad.toml"
    bad.write_text("[state\n")
    pg = tmp_path / "pg.toml"
    pg.write_text('[state]\ndatabase = "postgresql+psycopg://u@h/db"\n')
    unset = tmp_path / "unset.toml"
    unset.write_text(f'[state]\ndatabase = "sqlite:///{tmp_path}/never-created.db"\n')
    for path in (bad, pg, unset):
        assert fast_outbox(["outbox", "--json", "--config", str(path)]) is None, path
    monkeypatch.setenv("CRDSWATCH_STATE__DATABASE", f"sqlite:///{tmp_path}/never-created.db")
    assert fast_outbox(["outbox", "--json", *c]) is None  # the environment wins, as in the settings
    monkeypatch.delenv("CRDSWATCH_STATE__DATABASE")
    monkeypatch.setenv("CRDSWATCH_STATE", "{}")
    assert fast_outbox(["outbox", "--json", *c]) is None
    assert capsys.readouterr().out == ""


def test_a_database_at_another_schema_revision_goes_to_the_full_command(tmp_path: Path) -> None:
    import sqlite3

    config = _populated(tmp_path)
    with sqlite3.connect(tmp_path / "state.db") as conn:
        conn.execute("UPDATE alembic_version SET version_num = '0002_upstream'")
    assert fast_outbox(["outbox", "--json", "--config", str(config)]) is None


def test_stored_webhook_secrets_are_masked_as_by_the_full_command(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                                  monkeypatch: pytest.MonkeyPatch, db_url: str) -> None:
    """The fast path decodes only the stored subscribers that have a webhook or Slack URL; their
    tokens in an error text are masked exactly as the full command masks them."""
    from sqlalchemy import text

    from crdswatch.model import SubscriberConfig

    hook = "https://hooks.example.org/T000/B000/sekrit-token-123"
    config = tmp_path / "c.toml"
    config.write_text(f'[state]\ndatabase = "{db_url}"\n')
    store = Store.open(db_url)
    store.upsert_subscriber("hooked", SubscriberConfig(webhook_url=hook))
    store.upsert_subscriber("slacker", SubscriberConfig(slack_webhook=hook + "-slack"))
    store.upsert_subscriber("mailer", SubscriberConfig(email=("m@example.org",)))
    rows = [NewDelivery("hooked", "webhook", {"sel": [0]}), NewDelivery("slacker", "slack", {"sel": [0]})]
    act = Activation("2026-03-01T11:00:00+00:00", "jwst_0541.pmap")
    assert store.record_activation(KEY, act, "jwst_0540.pmap", {"changes": []}, rows, None, now=T0)
    claimed = store.claim("w1", T0, 60, 2)
    store.record_outcomes([Outcome(c.id, PermanentDeliveryError("HTTP 404")) for c in claimed], "w1", T0)
    with store.engine.begin() as conn:  # as an older crdswatch stored it: unscrubbed
        conn.execute(text("UPDATE deliveries SET last_error = 'HTTP 404: Cannot POST /T000/B000/sekrit-token-123'"))
    store.close()
    monkeypatch.setattr(sys.stdout, "isatty", lambda: False)
    full = _full(capsys, config)
    status, fast = _fast(capsys, "outbox", "--json", "--config", str(config))
    assert status == 0 and fast == full
    assert "sekrit-token-123" not in fast and fast.count("last_error") == 2


def test_database_timeouts_of_ones_own_go_to_the_full_command(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    config = _populated(tmp_path)
    assert fast_outbox(["outbox", "--json", "--config", str(config)]) == 0
    with_limits = tmp_path / "limits.toml"
    with_limits.write_text(config.read_text() + "[limits]\ndb_statement_timeout = 2\n")
    assert fast_outbox(["outbox", "--json", "--config", str(with_limits)]) is None
    monkeypatch.setenv("CRDSWATCH_LIMITS__DB_LOCK_TIMEOUT", "1")
    assert fast_outbox(["outbox", "--json", "--config", str(config)]) is None
