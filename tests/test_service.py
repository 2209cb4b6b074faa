"""The Daemon in process against real peers: operator alerts, /healthz, /metrics, the HTTP server's
limits, and graceful shutdown."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import structlog
from prometheus_client.parser import text_string_to_metric_families

from crdswatch.config import load_settings
from crdswatch.devtools.replay import ReplayServer
from crdswatch.store import Store
from tests.support.daemon_env import Clock, free_port, make_daemon, raw_http, until, write_config
from tests.support.fixtures_channels import smtp_pki, smtp_server  # noqa: F401
from tests.support.smtp_server import SmtpTestServer

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)

EVERYONE = """
[[subscribers]]
name = "everyone"
email = ["everyone@example.org"]
"""


def sample(metrics: bytes, name: str, **labels: str) -> float | None:
    for family in text_string_to_metric_families(metrics.decode()):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return None


@pytest.mark.parametrize("kind", ["rpcerror", "http500", "reset"])
async def test_alert_after_n_failed_polls_once_then_healthy_again(
    kind: str, tmp_path: Path, replay: ReplayServer, smtp_server: SmtpTestServer,  # noqa: F811
) -> None:
    port = free_port()
    config = write_config(tmp_path, server_url=replay.url, smtp=smtp_server, http_port=port,
                          source_extra="alert_after = 3", subscribers=EVERYONE,
                          extra='[alerts]\nadmin_email = ["ops@example.org"]')
    daemon = make_daemon(config, Clock(NOW))
    watch = daemon.watches[0]
    await daemon.start_http()
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(timeout=5) as http:
            await daemon.poll(watch)  # baseline
            assert (await http.get(f"{base}/healthz")).status_code == 200
            before = daemon.store.get_cursor(watch.key)
            replay.activate_next()
            # every request of a poll fails (each retry too): 5 failed polls' worth
            replay.inject_fault(kind, count=100, target="rpc")
            with structlog.testing.capture_logs() as logs:
                for n in range(1, 6):
                    await daemon.poll(watch)
                    health = await http.get(f"{base}/healthz")
                    assert health.status_code == 503 and f"{n} consecutive failed polls" in health.text
                    metrics = daemon.metrics.render()
                    assert sample(metrics, "crdswatch_source_consecutive_failures", source=watch.key) == n
                    assert sample(metrics, "crdswatch_alerts_total", kind="source") == (1 if n >= 3 else None)
            alerts = [e for e in logs if e["event"] == "ALERT"]
            assert len(alerts) == 1 and alerts[0]["kind"] == "source"
            assert "3 consecutive failed polls" in alerts[0]["message"]
            assert len([e for e in logs if e["event"] == "poll failed"]) == 5
            # nothing was recorded or queued while the server misbehaved
            assert daemon.store.get_cursor(watch.key) == before
            assert daemon.store.counts() == {"pending": 0, "leased": 0, "sent": 0, "dead": 0}

            await until(lambda: len(smtp_server.messages) == 1, "the alert e-mail")
            alert = smtp_server.messages[0].parsed()
            assert smtp_server.messages[0].rcpt_tos == ("ops@example.org",)
            assert alert["Subject"] == "[crdswatch] alert: source" and watch.key in alert.get_content()

            replay.clear_faults()
            await daemon.poll(watch)
            health = await http.get(f"{base}/healthz")
            assert (health.status_code, health.text) == (200, "ok\n")
            metrics = daemon.metrics.render()
            assert sample(metrics, "crdswatch_source_consecutive_failures", source=watch.key) == 0
            assert sample(metrics, "crdswatch_polls_total", source=watch.key, outcome="error") == 5
            assert daemon.store.get_cursor(watch.key).context == replay.context  # type: ignore[union-attr]
            await until(lambda: len(smtp_server.messages) == 2, "the notice")  # the poll caught up

            # a second outage is a second alert
            replay.inject_fault(kind, count=100, target="rpc")
            for _ in range(3):
                await daemon.poll(watch)
            assert sample(daemon.metrics.render(), "crdswatch_alerts_total", kind="source") == 2
    finally:
        await daemon.shutdown()


async def test_each_source_gets_its_own_alert_after(
    tmp_path: Path, replay: ReplayServer, jwst_data: Path,
) -> None:
    """Two observatories on one server: each [[sources]] table's alert_after applies to its own watch."""
    config = tmp_path / "two.toml"
    config.write_text(f"""
[state]
database = "sqlite:///{tmp_path}/state.db"
[[sources]]
observatory = "jwst"
server_url = "{replay.url}"
alert_after = 2
[[sources]]
observatory = "hst"
server_url = "{replay.url}"
alert_after = 7
""")
    daemon = make_daemon(config, Clock(NOW))
    try:
        by_obs = {w.source.observatory: w.alert_after for w in daemon.watches}
        assert by_obs == {"jwst": 2, "hst": 7}
    finally:
        await daemon.shutdown()


async def test_metrics_feed_404_and_request_limits(tmp_path: Path, replay: ReplayServer) -> None:
    port = free_port()
    daemon = make_daemon(write_config(tmp_path, server_url=replay.url, http_port=port), Clock(NOW))
    await daemon.start_http()
    base = f"http://127.0.0.1:{port}"
    try:
        await daemon.poll(daemon.watches[0])
        async with httpx.AsyncClient(timeout=5) as http:
            r = await http.get(f"{base}/metrics")
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain; version=0.0.4")
            families = {f.name: f for f in text_string_to_metric_families(r.text)}
            assert families["crdswatch_polls"].type == "counter"
            assert families["crdswatch_outbox_depth"].type == "gauge"
            key = daemon.watches[0].key
            assert sample(r.content, "crdswatch_polls_total", source=key, outcome="ok") == 1
            assert sample(r.content, "crdswatch_outbox_depth", status="dead") == 0
            assert (sample(r.content, "crdswatch_last_successful_poll_timestamp_seconds", source=key) or 0) > 0

            r = await http.get(f"{base}/nope")
            assert r.status_code == 404
            r = await http.get(f"{base}/metrics/")
            assert r.status_code == 404
        # raw HTTP for what a polite client would never send
        status, headers, _ = await raw_http(
            port, b"POST /unsubscribe HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n\r\n")
        assert status == 413 and headers["connection"] == "close"
        status, _, _ = await raw_http(port, b"POST /unsubscribe HTTP/1.1\r\nContent-Length: lots\r\n\r\n")
        assert status == 400
        status, _, _ = await raw_http(port, b"POST /unsubscribe HTTP/1.1\r\nContent-Length: -5\r\n\r\n")
        assert status == 400
        status, _, _ = await raw_http(port, b"garbage\r\n\r\n")
        assert status == 400
        status, _, _ = await raw_http(port, b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\n\r\n")
        assert status == 414
        # HTTP/1.1 without Host is a 400 (RFC 9112 section 3.2)
        status, _, _ = await raw_http(port, b"GET /healthz HTTP/1.1\r\n\r\n")
        assert status == 400
        # the server is still fine afterwards
        status, _, body = await raw_http(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert (status, body) == (200, b"ok\n")
    finally:
        await daemon.shutdown()


async def test_a_handler_failure_is_a_500_not_a_dropped_connection(tmp_path: Path, replay: ReplayServer) -> None:
    port = free_port()
    daemon = make_daemon(write_config(tmp_path, server_url=replay.url, http_port=port), Clock(NOW))
    await daemon.start_http()
    try:
        daemon.store.close()
        daemon.store = Store.open(f"sqlite:///{tmp_path}/missing/nowhere.db", run_migrations=False)
        status, _, body = await raw_http(port, b"GET /feed.atom HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert status == 500 and b"nowhere" not in body  # no internals leak to the client
    finally:
        daemon.store = Store.open(load_settings(tmp_path / "crdswatch.toml").state.database)
        await daemon.shutdown()


async def test_shutdown_releases_the_leases_it_holds(
    tmp_path: Path, replay: ReplayServer, smtp_server: SmtpTestServer,  # noqa: F811
) -> None:
    subscribers = """
[[subscribers]]
name = "daily"
email = ["daily@example.org"]
digest = "daily"
digest_hour = 13
[[subscribers]]
name = "weekly"
email = ["weekly@example.org"]
digest = "weekly"
"""
    clock = Clock(NOW)
    config = write_config(tmp_path, server_url=replay.url, smtp=smtp_server, subscribers=subscribers)
    daemon = make_daemon(config, clock)
    await daemon.poll(daemon.watches[0])
    for _ in range(2):
        replay.activate_next()
        await daemon.poll(daemon.watches[0])
    assert daemon.store.counts()["pending"] == 4
    # a drain that got as far as claiming (the daily rows are due at 13:00 UTC), then the stop
    claimed = daemon.store.claim(daemon.worker_id, NOW + timedelta(hours=1), 120, 100)
    assert {r.subscriber for r in claimed} == {"daily"} and len(claimed) == 2
    await daemon.shutdown(grace=1)
    with Store.open(load_settings(config).state.database) as store:
        rows = {r.id: r for r in store.outbox_rows()}
        assert all(r.status == "pending" and r.lease_owner is None for r in rows.values())
        assert all(rows[r.id].attempts == 0 for r in claimed)  # a release is not an attempt
    assert smtp_server.messages == []
    await daemon.drain()  # after the stop, nothing more is claimed
    assert smtp_server.messages == []
