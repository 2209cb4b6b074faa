"""Issue 9, class 8: one text cleaner for every reader (notices, webhook JSON, Atom feed, terminal)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import pytest

from crdswatch.model import Activation, ActivationDiff, Change, Notice
from crdswatch.render import email_message, slack_payloads, webhook_payload
from crdswatch.render.atom import atom_feed
from crdswatch.render.clean import clean_data, clean_text
from crdswatch.render.report import format_history

HOSTILE = ("Flat \x1b[31mred\x1b[0m \x1b]0;pwned\x07 \u202eevil\u202c \u2066x\u2069 zero\u200bwidth\ufeff "
           "nul\x00 bell\x07 del\x7f c1\x85 lone\ud800 end\r\nnext")
BAD = ["\x1b", "\u202e", "\u2066", "\u200b", "\ufeff", "\x00", "\x07", "\x7f", "\x85", "\ud800", "\r"]


def no_bad(text: str) -> None:
    found = [hex(ord(c)) for c in BAD if c in text]
    assert not found, found
    text.encode("utf-8")  # no lone surrogate left


def test_clean_text_removes_every_kind() -> None:
    out = clean_text(HOSTILE)
    no_bad(out)
    assert out.startswith("Flat red ") and "evil" in out and "zerowidth" in out and "\ufffd" in out
    assert out.endswith("end\nnext") and "pwned" not in out
    assert clean_text("plain: jwst_0541.pmap\tok") == "plain: jwst_0541.pmap\tok"
    assert clean_data({"a\u202e": ["x\x1b[2J", 3, None]}) == {"a": ["x", 3, None]}


def _diff() -> ActivationDiff:
    change = Change(old_mapping="jwst_nircam_dark_0001.rmap", new_mapping="jwst_nircam_dark_0002.rmap",
                    level="reference", action="replaced", instrument="nircam", reftype="dark",
                    old_file="a.fits", new_file="b\u202e.fits", line="x \x1b[31m y", match=("NRCA1",),
                    parameters=("DETECTOR",))
    act = Activation("2024-05-01T00:00:00+00:00", "jwst_0002.pmap", HOSTILE)
    return ActivationDiff("jwst", "https://jwst-crds.example.org", "latest", act, "jwst_0001.pmap",
                          (change,), {}, False)


def test_every_renderer_gets_clean_text() -> None:
    notice = Notice("team", (_diff(),), "because \x1b[5m", None, None)
    no_bad(json.dumps(webhook_payload(notice), ensure_ascii=False))
    for payload in slack_payloads(notice):
        no_bad(json.dumps(payload, ensure_ascii=False))
    msg = email_message(notice, sender="a@example.org", to=["b@example.org"], message_id="<x@y>",
                        date=datetime(2024, 5, 1, tzinfo=UTC), list_id="l.example.org", unsubscribe_url=None)
    for part in msg.walk():
        if part.get_content_maintype() == "text":
            no_bad(part.get_content())
    no_bad(str(msg["Subject"]))


def test_atom_feed_stays_well_formed() -> None:
    record = SimpleNamespace(source_key="https://s|jwst|latest", context="jwst_0002.pmap\x1b",
                             previous_context="jwst_0001.pmap", activation_date="2024-05-01T00:00:00+00:00",
                             description=HOSTILE, diff={"changes": [{**_diff().changes[0].to_json(), "instrument": "nircam\x00"}]})
    body = atom_feed([record], feed_url="http://x/feed.atom", server_names={}, updated=datetime(2024, 5, 1, tzinfo=UTC))
    ET.fromstring(body)  # an XML parser accepts it
    no_bad(body.decode("utf-8"))


@pytest.mark.parametrize("description", [HOSTILE, "\x1b[2J\x1b[H cleared"])
def test_history_report_prints_no_escape_sequences(description: str) -> None:
    out = format_history([{"date": "2024-05-01T00:00:00+00:00", "context": "jwst_0002.pmap", "description": description}])
    no_bad(out)


# -- the CLI's text outputs: what peers wrote reaches the terminal cleaned -------------------------------


def test_outbox_and_status_text_print_no_escape_sequences(tmp_path: Path) -> None:
    """A receiver's error page stored as a row's last_error (`crdswatch outbox`), and a server's
    error text in the daemon's health reason (`crdswatch status`, from /api/status)."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    import sqlalchemy

    from crdswatch.errors import TransientDeliveryError
    from crdswatch.store import NewDelivery, Outcome, Store
    from tests.support.daemon_env import cli

    db = tmp_path / "state.db"
    now = datetime(2026, 3, 1, 12, tzinfo=UTC)
    with Store.open(f"sqlite:///{db}") as store:
        store.record_activation("k|jwst|latest", Activation("2026-03-01T11:00:00+00:00", "jwst_0541.pmap"),
                                "jwst_0540.pmap", {"changes": []}, [NewDelivery("s", "email:s@example.org", {"sel": [0]})],
                                None, now=now)
        [row] = store.claim("w1", now, 60, 1)
        store.record_outcomes([Outcome(row.id, TransientDeliveryError("later"))], "w1", now)
    engine = sqlalchemy.create_engine(f"sqlite:///{db}")
    with engine.begin() as conn:
        conn.execute(sqlalchemy.text("UPDATE deliveries SET last_error = :e"), {"e": "HTTP 503: " + HOSTILE.replace("\ud800", "")})
    engine.dispose()

    class Status(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps({"healthy": False, "health": "jwst: 1 consecutive failed polls; last error: " + HOSTILE,
                               "sources": [], "outbox": {}, "lists": []}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Status)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    config = tmp_path / "c.toml"
    config.write_text(f'[state]\ndatabase = "sqlite:///{db}"\n\n[http]\nlisten = "127.0.0.1:{server.server_address[1]}"\n')
    try:
        outbox = cli("outbox", "--config", str(config))
        status = cli("status", "--config", str(config))
    finally:
        server.shutdown()
        server.server_close()
    assert outbox.returncode == 0 and "error: HTTP 503: Flat red" in outbox.stdout, outbox
    assert status.returncode == 1 and "UNHEALTHY: jwst: 1 consecutive failed polls" in status.stdout, status
    for done in (outbox, status):
        no_bad(done.stdout.replace("\n", ""))
        assert len(done.stdout.splitlines()) == 2, done.stdout  # the counts or health line, then one line
