"""The offline demo: real JWST history replayed through the real daemon into a local Maildir and feed."""

from __future__ import annotations

import asyncio
import email
import email.policy
import shutil
import socket
import urllib.request
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crdswatch.config import load_settings
from crdswatch.contexts.history import load_server_config
from crdswatch.devtools.bundled import extract_bundled
from crdswatch.devtools.replay import ReplayServer

__all__ = ["DemoResult", "run_demo"]

DEMO_TOML = """\
# Written by `crdswatch demo`: the daemon's configuration for this run. To run the same by hand:
#   crdswatch replay-server --port {crds_port} --upto {start}     (in one terminal)
#   crdswatch run --config {out}/crdswatch.toml                    (in another)
log_format = "console"

[state]
database = "sqlite:///{out}/state.db"

[[sources]]
observatory = "jwst"
server_url = "http://127.0.0.1:{crds_port}"
poll_interval = 1
timeout = 10

[smtp]
host = "127.0.0.1"
port = {smtp_port}
security = "none"          # a local demo mailbox; real deployments use starttls or tls
sender = "CRDS notices (demo) <crds-notices@demo.invalid>"

[http]
listen = "127.0.0.1:{http_port}"
public_url = "http://127.0.0.1:{http_port}"
unsubscribe_secret = "demo-only-not-a-secret"

[outbox]
max_attempts = 3
backoff_base = 1
backoff_max = 5
drain_interval = 0.5

[[subscribers]]
name = "nirspec-team"
email = ["nirspec-team@demo.invalid"]
observatories = ["jwst"]
instruments = ["nirspec"]

[[subscribers]]
name = "miri-darks"
email = ["miri-darks@demo.invalid"]
instruments = ["miri"]
reftypes = ["dark"]

[[subscribers]]
name = "nirspec-ifu"          # only rules that apply to NIRSpec IFU exposures (CRDS matching rules)
email = ["nirspec-ifu@demo.invalid"]
instruments = ["nirspec"]
parameters = {{ EXP_TYPE = ["NRS_IFU"] }}

[[subscribers]]
name = "everything-daily"
email = ["everything@demo.invalid"]
digest = "daily"
digest_hour = 8
"""


@dataclass
class DemoResult:
    out: Path
    activations: list[str]
    sent: Counter[str]
    held: Counter[str]
    rules: Counter[str]  # rule changes in the notices each subscriber got (or will get)
    dead: int
    mails: list[Path]
    feed_entries: int
    showcase: Path | None  # the notice worth reading first: NIRSpec's, for the latest activation


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _smtp_sink(maildir: Path, port: int) -> Any:
    try:
        from aiosmtpd.controller import Controller
        from aiosmtpd.handlers import Mailbox
    except ImportError:
        raise SystemExit("the demo's local mailbox needs aiosmtpd: pip install 'crdswatch[demo]'") from None
    controller = Controller(Mailbox(maildir), hostname="127.0.0.1", port=port)
    controller.start()
    return controller


async def run_demo(out: Path, count: int = 15, *, follow: bool = False, progress: Any = None,
                   announce: Any = None) -> DemoResult:
    """Replay the last `count` real activations of the bundled JWST history through the daemon."""
    from crdswatch.service.daemon import Daemon

    if out.exists():
        shutil.rmtree(out)
    data = extract_bundled(out / "crds-data")
    history = [a.context for a in load_server_config(data / "config" / "server_config").activations()]
    count = max(1, min(count, len(history) - 1))
    start = history[-count - 1]
    ports = {"crds_port": _free_port(), "smtp_port": _free_port(), "http_port": _free_port()}
    config = out / "crdswatch.toml"
    config.write_text(DEMO_TOML.format(out=out.resolve(), start=start, **ports))
    sink = _smtp_sink(out / "Maildir", ports["smtp_port"])
    server = ReplayServer(data / "mappings", data / "config" / "server_config", upto=start,
                          port=ports["crds_port"]).start()
    daemon = Daemon(load_settings(config))
    task = asyncio.create_task(daemon.run(install_signals=follow))
    try:
        return await _drive(daemon, server, out, start, count, ports["http_port"], follow, progress, announce)
    finally:
        daemon.stop_event.set()
        await task
        server.stop()
        sink.stop()


async def _drive(daemon: Any, server: ReplayServer, out: Path, start: str, count: int, http_port: int,
                 follow: bool, progress: Any, announce: Any = None) -> DemoResult:
    key = daemon.watches[0].key
    await _until(lambda: daemon.store.get_cursor(key) is not None, "the baseline poll")
    done: list[str] = []
    for _ in range(count):
        server.activate_next()
        target = server.context
        await _until(lambda t=target: daemon.store.get_cursor(key).context == t, f"activation {target}")
        done = [a.context for a in reversed(daemon.store.list_activations(key, limit=count + 5)) if a.diff]
        if progress is not None:
            progress(len(done), count, target)
    await _until(lambda: _due(daemon) == 0, "the outbox to drain", timeout=120)
    # Fetched over HTTP like any feed reader would; in a thread, since the server runs on this loop.
    url = f"http://127.0.0.1:{http_port}/feed.atom"
    feed = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=10).read())
    (out / "feed.atom").write_bytes(feed)
    if follow:
        if announce is not None:  # the daemon keeps serving: say where its pages are
            announce(f"http://127.0.0.1:{http_port}/")
        await daemon.stop_event.wait()
    return _result(daemon, out, done, feed)


def _due(daemon: Any) -> int:
    """Rows still to send now (digest rows wait for their slot and do not count)."""
    from datetime import UTC, datetime

    now = datetime.now(UTC)
    return sum(1 for r in daemon.store.outbox_rows(limit=100000)
               if r.status in ("pending", "leased") and r.next_attempt_at <= now)


async def _until(check: Any, what: str, timeout: float = 60) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        if loop.time() > deadline:
            raise TimeoutError(f"demo: gave up waiting for {what}")
        await asyncio.sleep(0.1)


def _result(daemon: Any, out: Path, done: list[str], feed: bytes) -> DemoResult:
    from io import BytesIO

    import feedparser

    from crdswatch.notices.codec import decode_selection, notice_from_json, record_changes

    rows = daemon.store.outbox_rows(limit=100000)
    sent = Counter(r.subscriber for r in rows if r.status == "sent")
    held = Counter(r.subscriber for r in rows if r.status == "pending")
    rules: Counter[str] = Counter()
    # A row names the changes its subscriber's filters selected in the activation stored once.
    seen = daemon.store.get_activations(sorted({r.activation_id for r in rows if r.activation_id is not None}))
    for r in rows:
        if "sel" in r.payload and r.activation_id in seen:
            changes = record_changes(seen[r.activation_id].diff)
            rules[r.subscriber] += sum(1 for i in decode_selection(r.payload["sel"])
                                       if changes[i].level == "reference")
        if "notice" in r.payload:  # a row of the older shape: a full copy of its notice
            rules[r.subscriber] += sum(1 for a in notice_from_json(r.payload["notice"]).activations
                                       for c in a.changes if c.level == "reference")
    dead = sum(1 for r in rows if r.status == "dead")
    mails = sorted((out / "Maildir" / "new").glob("*"))
    parsed = feedparser.parse(BytesIO(feed))
    return DemoResult(out, done, sent, held, rules, dead, mails, len(parsed.entries), _showcase(mails))


def _showcase(mails: list[Path]) -> Path | None:
    """The latest notice to the NIRSpec team (the ReDCaT list most like it), else the first mail."""
    best: tuple[str, Path] | None = None
    for path in mails:
        msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        if "nirspec-team" in str(msg["To"]) and (best is None or str(msg["Subject"]) > best[0]):
            best = (str(msg["Subject"]), path)
    return best[1] if best else (mails[0] if mails else None)


def first_notice_text(mail: Path, lines: int = 45) -> str:
    msg = email.message_from_bytes(mail.read_bytes(), policy=email.policy.default)
    body = msg.get_body(preferencelist=("plain",))
    text = body.get_content() if body is not None else ""
    head = f"Subject: {msg['Subject']}\nTo: {msg['To']}\n\n"
    kept = text.splitlines()[:lines]
    return head + "\n".join(kept) + ("\n  [...]" if len(text.splitlines()) > lines else "")
